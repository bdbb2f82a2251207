{ lib }:
{
  description = "type error: host port 70000 out of range in a generic container";
  config = {
    services.nixarr-units = {
      enable = true;
      containers.web = {
        image = "docker.io/library/nginx:1.27";
        ports = [
          {
            host = 70000;
            container = 80;
          }
        ];
      };
    };
  };
  # The element part of the path ("[definition 1-entry 1]") is lib's wording.
  evalError = "services.nixarr-units.containers.web.ports.";
}
