{ lib }:
{
  description = "autoUpdate: the spec gets the schedule and services, the update service needs nothing on its path (registries are asked in-process, no skopeo)";
  config = {
    services.nixarr-units = {
      sonarr.enable = true;
      radarr.enable = true;
      autoUpdate = {
        services = [ "radarr" ];
        schedule = "Sun 04:00";
      };
    };
  };
  checks = config: {
    spec =
      config.services.nixarr-units.spec.autoUpdate == {
        schedule = "Sun 04:00";
        services = [ "radarr" ];
      };
    noSkopeo = !(lib.any (p: lib.hasPrefix "skopeo" p.name) (config.systemd.services.nixarr-update.path or [ ]));
  };
}
