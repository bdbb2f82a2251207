{ lib }:
{
  description = "type error: device permissions other than r, w and m";
  config = {
    services.nixarr-units = {
      enable = true;
      containers.web = {
        image = "docker.io/library/nginx:1.27";
        devices = [ "/dev/dri:/dev/dri:rwx" ];
      };
    };
  };
  evalError = "services.nixarr-units.containers.web.devices.";
}
