{ lib }:
{
  description = "the ids containers run as: 400-999 declared as system users in the media group (NixOS would hand them out), < 400 and >= 1000 left alone, a human user's uid warned about";
  config = {
    users.users.alice = {
      isNormalUser = true;
      uid = 1000;
    };
    services.nixarr-units = {
      sonarr.enable = true;
      radarr.enable = true;
      # Seerr's image runs as 1000.
      seerr.enable = true;
      # The native Lidarr's static uid, to keep file ownership: not declared.
      lidarr = {
        enable = true;
        puid = 306;
      };
      containers.web = {
        image = "docker.io/library/nginx:1.27";
        puid = 700;
        pgid = 701;
      };
    };
  };
  warnings = [
    "services.nixarr-units.seerr run as uid 1000, which is users.users.alice's: that user can read and change their data in /var/lib/nixarr"
  ];
  checks = config: {
    users =
      removeAttrs config.users.users [ "alice" ] == {
        nixarr = {
          uid = 568;
          isSystemUser = true;
          group = "media";
          description = "nixarr-units containers (uid 568)";
        };
        nixarr-web = {
          uid = 700;
          isSystemUser = true;
          group = "media";
          description = "nixarr-units containers (uid 700)";
        };
      };
    groups = config.users.groups.media.gid == 169 && config.users.groups.nixarr-701.gid == 701;
  };
}
