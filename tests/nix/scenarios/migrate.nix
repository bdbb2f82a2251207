{ lib }:
{
  description = "native Sonarr still enabled while migrating to the container (migrateFrom)";
  config = {
    services.sonarr.enable = true;
    services.jellyseerr.enable = true;
    services.nixarr-units = {
      enable = true;
      sonarr = {
        enable = true;
        migrateFrom = "nixpkgs";
        port = 8990;
      };
      seerr = {
        enable = true;
        migrateFrom = "nixarr";
      };
    };
  };
  checks =
    config:
    let
      spec = config.services.nixarr-units.spec;
    in
    {
      nixpkgs-source = spec.services.sonarr.migration == { };
      nixarr-source = spec.services.seerr.migration == { legacyDataDir = "/data/.state/nixarr/jellyseerr"; };
    };
}
