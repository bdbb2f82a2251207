{ lib, flake }:
{
  description = "the flake's nixosModules.default and nixosModules.nixarr-units imported together (they are one module)";
  nonFlakeEntry = false;
  config = {
    imports = [
      flake.nixosModules.default
      flake.nixosModules.nixarr-units
    ];
    services.nixarr-units.sonarr.enable = true;
  };
  checks = config: {
    package-from-flake = config.services.nixarr-units.package == flake.packages.x86_64-linux.default;
    built-from-source = config.services.nixarr-units.package.builtFromSource or false;
    only-sonarr = lib.attrNames config.services.nixarr-units.spec.services == [ "sonarr" ];
  };
}
