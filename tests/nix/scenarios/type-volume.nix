{ lib }:
{
  description = "type error: a relative volume path with a colon";
  config = {
    services.nixarr-units = {
      enable = true;
      containers.web = {
        image = "docker.io/library/nginx:1.27";
        volumes = [
          {
            host = "data:x";
            container = "/x";
          }
        ];
      };
    };
  };
  evalError = "services.nixarr-units.containers.web.volumes.";
}
