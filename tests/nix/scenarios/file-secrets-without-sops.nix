{ lib }:
{
  description = "secrets from plain files (agenix) without sops-nix: every delivery mode";
  sops = false;
  config = {
    services.nixarr-units = {
      enable = true;
      sonarr = {
        enable = true;
        secrets.SONARR__AUTH__APIKEY.file = "/run/agenix/sonarr-api-key";
      };
      radarr = {
        enable = true;
        # A value in the environment where inspect shows it: only when
        # acknowledged, and then with a build warning.
        secrets.RADARR__AUTH__APIKEY = {
          file = "/run/agenix/radarr-api-key";
          mode = "envFile";
          allowEnvironmentValue = true;
        };
      };
      prowlarr = {
        enable = true;
        # A mounted podman secret is fine when no `file` secret shares
        # /run/secrets.
        secrets.PROWLARR__AUTH__APIKEY = {
          file = "/run/agenix/prowlarr-api-key";
          mode = "podmanSecret";
          podmanSecretType = "mount";
        };
      };
      vpn = {
        enable = true;
        provider = "custom";
        secrets.WIREGUARD_PRIVATE_KEY.file = "/run/agenix/wg-key";
        secrets.WIREGUARD_ADDRESSES.file = "/run/agenix/wg-addresses";
      };
    };
  };
  # The acknowledged exposure is said at build time.
  warnings = [ "services.nixarr-units.radarr.secrets.RADARR__AUTH__APIKEY: the value is delivered as an environment variable" ];
  checks =
    config:
    let
      spec = config.services.nixarr-units.spec;
    in
    {
      sonarr = spec.services.sonarr.secrets == { SONARR__AUTH__APIKEY.file = "/run/agenix/sonarr-api-key"; };
      radarr =
        spec.services.radarr.secrets.RADARR__AUTH__APIKEY == {
          file = "/run/agenix/radarr-api-key";
          mode = "envFile";
          allowEnvironmentValue = true;
        };
      radarr-warning =
        builtins.length config.warnings == 1
        && lib.hasPrefix "services.nixarr-units.radarr.secrets.RADARR__AUTH__APIKEY: the value is delivered as an environment variable, which `podman inspect` shows" (builtins.head config.warnings);
      prowlarr =
        spec.services.prowlarr.secrets.PROWLARR__AUTH__APIKEY == {
          file = "/run/agenix/prowlarr-api-key";
          mode = "podmanSecret";
          podmanSecretType = "mount";
        };
      gluetun =
        spec.services.gluetun.secrets == {
          WIREGUARD_PRIVATE_KEY.file = "/run/agenix/wg-key";
          WIREGUARD_ADDRESSES.file = "/run/agenix/wg-addresses";
        };
      # Without sops-nix the module declares only its extension of
      # sops.secrets (never read here: it has no definitions).
      no-sops = lib.attrNames (config.sops or { }) == [ "secrets" ];
    };
}
