{ lib }:
{
  description = "api-root: api.user = \"root\" runs the API as root: no user in the spec, no polkit rule, no user created";
  config = {
    services.nixarr-units = {
      api = {
        enable = true;
        user = "root";
      };
      sonarr.enable = true;
    };
  };
  checks = config: {
    no-user-in-spec = config.services.nixarr-units.spec.api == { enable = true; listen = [ ]; };
    no-polkit = !config.security.polkit.enable && config.security.polkit.extraConfig == "";
    no-api-user = !(config.users.users ? nixarr-api);
  };
}
