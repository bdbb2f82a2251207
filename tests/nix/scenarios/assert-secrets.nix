{ lib }:
{
  description = "assertions: secret rules of the binary (environment clash, sources, podmanSecretType, /run/secrets shared)";
  config = {
    sops.defaultSopsFile = "/etc/nixos/secrets.yaml";
    sops.secrets."sonarr/api-key" = { };
    sops.secrets."radarr/db" = { };
    services.nixarr-units = {
      enable = true;
      sonarr = {
        enable = true;
        environment.SONARR__AUTH__APIKEY = "in-the-store";
        environment.FILE__SONARR__POSTGRES__PASSWORD = "/elsewhere";
        secrets = {
          SONARR__AUTH__APIKEY.sopsSecret = "sonarr/api-key";
          # file mode: FILE__SONARR__POSTGRES__PASSWORD is set by the bridge.
          SONARR__POSTGRES__PASSWORD.file = "/run/agenix/sonarr-db";
          # Set by nixarr-units for LinuxServer.io images.
          TZ.file = "/run/agenix/tz";
        };
      };
      radarr = {
        enable = true;
        secrets = {
          RADARR__AUTH__APIKEY = { };
          RADARR__POSTGRES__PASSWORD = {
            sopsSecret = "radarr/db";
            file = "/run/agenix/radarr-db";
          };
          RADARR__POSTGRES__USER = {
            file = "/run/agenix/radarr-db-user";
            podmanSecretType = "mount";
          };
        };
      };
      bazarr = {
        enable = true;
        secrets = {
          # A value in the environment, not acknowledged.
          BAZARR_TOKEN = {
            file = "/run/agenix/bazarr-token";
            mode = "envFile";
          };
          # An acknowledgement where nothing is exposed.
          BAZARR_KEY = {
            file = "/run/agenix/bazarr-key";
            allowEnvironmentValue = true;
          };
          # A path variable for a secret that is no file.
          BAZARR_OTHER = {
            file = "/run/agenix/bazarr-other";
            mode = "podmanSecret";
            podmanSecretType = "env";
            fileEnv = "BAZARR_OTHER_FILE";
          };
        };
      };
      lidarr = {
        enable = true;
        secrets = {
          LIDARR__AUTH__APIKEY = {
            file = "/run/agenix/lidarr-api-key";
            mode = "podmanSecret";
            podmanSecretType = "mount";
          };
          LIDARR__POSTGRES__PASSWORD.file = "/run/agenix/lidarr-db";
        };
      };
    };
  };
  assertions = [
    "services.nixarr-units.sonarr.secrets.SONARR__AUTH__APIKEY: `SONARR__AUTH__APIKEY` is also set in services.nixarr-units.sonarr.environment; a value belongs in one place: remove services.nixarr-units.sonarr.environment.SONARR__AUTH__APIKEY."
    "services.nixarr-units.sonarr.secrets.SONARR__POSTGRES__PASSWORD: `FILE__SONARR__POSTGRES__PASSWORD` is also set in services.nixarr-units.sonarr.environment"
    "services.nixarr-units.sonarr.secrets.TZ: `TZ` is also set by nixarr-units for this container (TZ, PUID, PGID, UMASK)"
    "services.nixarr-units.radarr.secrets.RADARR__AUTH__APIKEY: gives no source"
    "services.nixarr-units.radarr.secrets.RADARR__POSTGRES__PASSWORD: sets both sopsSecret and file"
    "services.nixarr-units.radarr.secrets.RADARR__POSTGRES__USER.podmanSecretType only applies to mode = \"podmanSecret\" (the mode is \"file\")"
    "services.nixarr-units.bazarr.secrets.BAZARR_TOKEN.mode = \"envFile\" would put the value of BAZARR_TOKEN in the container's environment, where `podman inspect` shows it; drop mode to deliver it as the file /run/secrets/BAZARR_TOKEN (its path in FILE__BAZARR_TOKEN), or set services.nixarr-units.bazarr.secrets.BAZARR_TOKEN.allowEnvironmentValue = true to accept that."
    "services.nixarr-units.bazarr.secrets.BAZARR_KEY.allowEnvironmentValue only applies to mode = \"env\""
    "services.nixarr-units.bazarr.secrets.BAZARR_OTHER.fileEnv only applies to mode = \"file\" (the default)"
    "services.nixarr-units.lidarr.secrets: LIDARR__AUTH__APIKEY (podmanSecretType = \"mount\") and the `file` secrets LIDARR__POSTGRES__PASSWORD would all use /run/secrets"
  ];
}
