{ lib }:
{
  description = "assertion: the containers' uid is another declared user's";
  config = {
    users.users.backup = {
      isSystemUser = true;
      uid = 568;
      group = "backup";
    };
    services.nixarr-units.sonarr.enable = true;
  };
  assertions = [
    "services.nixarr-units: containers run as uid 568 (services.nixarr-units.sonarr), declared as the system user users.users.nixarr, but users.users.backup has that uid too. Choose another services.nixarr-units.defaults.puid (or the container's puid), or set services.nixarr-units.createUsers = false"
  ];
}
