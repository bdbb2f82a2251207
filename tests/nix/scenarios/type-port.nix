{ lib }:
{
  description = "type error: a port given as a string";
  config = {
    services.nixarr-units = {
      enable = true;
      sonarr = {
        enable = true;
        port = "8989";
      };
    };
  };
  evalError = "services.nixarr-units.sonarr.port";
}
