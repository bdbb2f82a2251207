{ lib }:
{
  description = "assertion: native services.sonarr and the container both enabled without migrateFrom";
  config = {
    services.sonarr.enable = true;
    services.nixarr-units = {
      enable = true;
      sonarr.enable = true;
    };
  };
  assertions = [ "services.nixarr-units.sonarr.enable and services.sonarr.enable are both true" ];
}
