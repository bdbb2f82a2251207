{ lib }:
{
  description = "api: services.nixarr-units.api reaches the spec's api block with the token files as paths";
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
      };
  };
}
