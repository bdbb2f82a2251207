{ lib }:
{
  description = "assertion: a native app that runs as a plain systemd unit (nixarr's bazarr, jellyseerr) beside its container";
  config = {
    # What nixarr defines for these apps: systemd units, no services.<n>.enable.
    systemd.services.bazarr = {
      description = "bazarr";
      serviceConfig.User = "bazarr";
    };
    systemd.services.jellyseerr.description = "Jellyseerr, a requests manager for Jellyfin";
    # A native unit switched off is fine.
    systemd.services.sonarr.enable = false;
    services.nixarr-units = {
      bazarr.enable = true;
      seerr.enable = true;
      sonarr.enable = true;
    };
  };
  assertions = [
    "services.nixarr-units.bazarr.enable is true and the native unit systemd.services.bazarr is enabled too (defined by another module, e.g. nixarr): the native service and the container would serve the same port (6767)"
    "services.nixarr-units.seerr.enable is true and the native unit systemd.services.jellyseerr is enabled too"
  ];
}
