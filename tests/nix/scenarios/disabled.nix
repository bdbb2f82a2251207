{ lib }:
{
  description = "stack switched off with enable = false: nothing is installed";
  config = {
    services.nixarr-units = {
      enable = false;
      sonarr.enable = true;
      containers.web.image = "docker.io/library/nginx:1.27";
    };
  };
  noSpec = true;
  checks = config: {
    nothing-installed = config.systemd.packages == [ ] && config.systemd.tmpfiles.rules == [ ];
    no-engine = !config.virtualisation.podman.enable;
  };
}
