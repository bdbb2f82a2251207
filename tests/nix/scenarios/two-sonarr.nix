{ lib }:
{
  description = "two Sonarr instances (one for 4K), generic containers with secrets, docker backend";
  config = {
    sops.defaultSopsFile = "/etc/nixos/secrets.yaml";
    sops.secrets."sonarr-4k/api-key" = { };
    sops.secrets."db/password" = { };
    services.nixarr-units = {
      enable = true;
      backend = "docker";
      prefix = "media";
      stateDir = "/srv/media state";
      sonarr.enable = true;
      # Its own group, beside the catalog's (sonarr is in `core`).
      profiles.web = [
        "homepage"
        "db"
      ];
      instances.sonarr-4k = {
        app = "sonarr";
        port = 8990;
        environment.SONARR__APP__INSTANCENAME = "Sonarr 4K";
        secrets.SONARR__AUTH__APIKEY.sopsSecret = "sonarr-4k/api-key";
      };
      containers.homepage = {
        image = "ghcr.io/gethomepage/homepage:v1.4.0";
        description = "Homepage dashboard";
        ports = [
          {
            host = 3000;
            container = 3000;
            address = "127.0.0.1";
          }
        ];
        volumes = [
          {
            host = "/srv/media state/homepage";
            container = "/app/config";
            create = true;
          }
        ];
        labels."org.example.owner" = "media-team";
        health = {
          http = "/api/healthcheck";
          port = 3000;
        };
        restart = "always";
        dependsOn = [ "sonarr" ];
        # No app, no secretFileEnv: still a file (FILE__<name>), never a
        # value in the environment; a secret can name its own variable.
        secrets.HOMEPAGE_VAR_SONARR_KEY.file = "/run/agenix/homepage-sonarr-key";
        secrets.RADARR_KEY = {
          file = "/run/agenix/homepage-radarr-key";
          fileEnv = "HOMEPAGE_FILE_RADARR_KEY";
        };
      };
      containers.db = {
        image = "docker.io/library/postgres:17";
        devices = [ { host = "/dev/fuse"; } ];
        # The official images' convention: POSTGRES_PASSWORD_FILE.
        secretFileEnv = "{name}_FILE";
        secrets.POSTGRES_PASSWORD.sopsSecret = "db/password";
        environment.POSTGRES_USER = "media";
      };
      containers.radarr-anime = {
        app = "radarr";
        ports = [
          {
            host = 7879;
            container = 7878;
          }
        ];
        health.enable = false;
      };
    };
  };
  checks =
    config:
    let
      spec = config.services.nixarr-units.spec;
    in
    {
      db-device = spec.services.db.devices == [ { host = "/dev/fuse"; } ];
      docker-enabled = config.virtualisation.docker.enable && !config.virtualisation.podman.enable;
      engine = spec.engine.path == "/nix/store/00000000000000000000000000000000-docker-27.5.1/bin/docker";
      both-sonarrs =
        spec.services.sonarr.app == "sonarr"
        && spec.services.sonarr-4k.app == "sonarr"
        && (builtins.head spec.services.sonarr-4k.ports).host == 8990;
      health-disabled = spec.services.radarr-anime ? health && spec.services.radarr-anime.health == null;
      health-kept = !(spec.services.sonarr ? health);
      target = config.systemd.targets.media.wantedBy == [ "multi-user.target" ];
      # A `create` volume is the user's directory: created, never re-chowned.
      tmpfiles-escaped = lib.elem "d /srv/media\\x20state/homepage :0750 :568 :169 -" config.systemd.tmpfiles.rules;
      tmpfiles-own-dir = lib.elem "d /srv/media\\x20state/sonarr-4k 0750 568 169 -" config.systemd.tmpfiles.rules;
      no-firewall = config.networking.firewall.allowedTCPPorts == [ ];
      homepage-secret =
        spec.services.homepage.secrets == {
          HOMEPAGE_VAR_SONARR_KEY.file = "/run/agenix/homepage-sonarr-key";
          RADARR_KEY = {
            file = "/run/agenix/homepage-radarr-key";
            fileEnv = "HOMEPAGE_FILE_RADARR_KEY";
          };
        };
      no-warnings = config.warnings == [ ];
      profiles = spec.profiles == {
        web = [
          "homepage"
          "db"
        ];
      };
      db-secret-file-env =
        spec.services.db.secretFileEnv == "{name}_FILE"
        && spec.services.db.secrets == { POSTGRES_PASSWORD.file = "/run/secrets/db/password"; };
      no-secret-file-env-by-default = !(spec.services.homepage ? secretFileEnv);
      restart-units-prefix = config.sops.secrets."sonarr-4k/api-key".restartUnits == [ "media-sonarr-4k.service" ];
    };
}
