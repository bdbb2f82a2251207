{ lib }:
{
  description = "imported without flakes (modules/) on a nixpkgs without the package: it is built from the source tree";
  pkgs = p: removeAttrs p [ "nixarr-units" ];
  config = {
    services.nixarr-units.sonarr.enable = true;
  };
  checks = config: {
    built-from-source = config.services.nixarr-units.package.builtFromSource or false;
    named-after-cargo = config.services.nixarr-units.package.pname == "nixarr-units";
    installed = config.environment.systemPackages == [ config.services.nixarr-units.package ];
  };
}
