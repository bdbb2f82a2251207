{ lib }:
{
  description = "createUsers = false: the containers run as a uid the user declared (no assertion, no user of the module's)";
  config = {
    users.users.media-owner = {
      isSystemUser = true;
      uid = 568;
      group = "media";
    };
    services.nixarr-units = {
      createUsers = false;
      sonarr.enable = true;
    };
  };
  checks = config: {
    only-the-users = lib.attrNames config.users.users == [ "media-owner" ];
  };
}
