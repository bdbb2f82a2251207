{ lib }:
{
  description = "api: services.nixarr-units.api reaches the spec's api block with the token files as paths; the API runs as the system user nixarr-api, granted the stack's units by polkit";
  config = {
    services.nixarr-units = {
      api = {
        enable = true;
        listen = [ "127.0.0.1:8089" ];
        group = "media";
        tokenFile = "/run/secrets/nixarr-api-token";
        readTokenFile = "/run/secrets/nixarr-api-read-token";
      };
      sonarr.enable = true;
    };
  };
  checks = config: {
    api-in-spec =
      config.services.nixarr-units.spec.api == {
        enable = true;
        listen = [ "127.0.0.1:8089" ];
        group = "media";
        tokenFile = "/run/secrets/nixarr-api-token";
        readTokenFile = "/run/secrets/nixarr-api-read-token";
        user = "nixarr-api";
      };
    polkit-enabled = config.security.polkit.enable;
    api-user-created =
      config.users.users.nixarr-api == {
        isSystemUser = true;
        group = "nixarr-api";
        extraGroups = [ "systemd-journal" ];
        description = "nixarr-units control API (nixarr stack)";
      }
      && config.users.groups ? nixarr-api;
  };
}
