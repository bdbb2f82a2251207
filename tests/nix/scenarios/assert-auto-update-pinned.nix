{ lib }:
{
  description = "autoUpdate of a service imageLock pins is refused at evaluation, saying how to choose";
  config = {
    services.nixarr-units = {
      imageLock = ../fixtures/images.lock.json;
      sonarr.enable = true;
      radarr.enable = true;
      autoUpdate.services = [
        "sonarr"
        "radarr"
        "lidarr"
      ];
    };
  };
  assertions = [
    "autoUpdate.services: `sonarr` runs lscr.io/linuxserver/sonarr:latest, which services.nixarr-units.imageLock pins"
    "Choose one: pin it"
    "autoUpdate.services: `lidarr` is not an enabled service"
  ];
}
