{ lib }:
{
  description = "migrating Seerr from nixpkgs' services.seerr takes its configDir (/var/lib/seerr/ from stateVersion 26.05 on), under /var/lib/private (DynamicUser)";
  config = {
    # As nixpkgs declares it (default for stateVersion >= 26.05).
    options.services.seerr.configDir = lib.mkOption {
      type = lib.types.path;
      default = "/var/lib/seerr/";
    };
    config.services.nixarr-units.seerr = {
      enable = true;
      migrateFrom = "nixpkgs";
    };
  };
  checks = config: {
    legacy-dir = config.services.nixarr-units.spec.services.seerr.migration == { legacyDataDir = "/var/lib/private/seerr"; };
  };
}
