{ lib }:
{
  description = "imported without flakes with the overlay modules/default.nix names (nix/overlay.nix)";
  pkgs =
    p:
    let
      base = removeAttrs p [ "nixarr-units" ];
    in
    lib.fix (final: base // import ../../../nix/overlay.nix final base);
  config =
    { pkgs, ... }:
    {
      services.nixarr-units.sonarr.enable = true;
      # The module's default must be the overlay's package.
      assertions = [
        {
          assertion = pkgs ? nixarr-units;
          message = "the overlay adds no pkgs.nixarr-units";
        }
      ];
    };
  checks = config: {
    built-from-source = config.services.nixarr-units.package.builtFromSource or false;
  };
}
