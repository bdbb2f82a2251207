{ lib }:
{
  description = "autoUpdate: the spec gets the schedule and services, the update service gets skopeo on its path";
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
    skopeo = map (p: p.name) config.systemd.services.nixarr-update.path == [ "skopeo-1.18.0" ];
  };
}
