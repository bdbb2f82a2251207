{ lib }:
{
  description = "type error: umask that is not octal";
  config = {
    services.nixarr-units = {
      enable = true;
      defaults.umask = "999";
      sonarr.enable = true;
    };
  };
  evalError = "services.nixarr-units.defaults.umask";
}
