{ lib }:
{
  description = "assertion: dependency cycle, health probe on an unpublished port";
  config = {
    services.nixarr-units = {
      enable = true;
      containers.a = {
        image = "docker.io/library/nginx:1.27";
        dependsOn = [ "b" ];
      };
      containers.b = {
        image = "docker.io/library/nginx:1.27";
        dependsOn = [ "a" ];
        health = {
          http = "/health";
          port = 80;
        };
      };
    };
  };
  assertions = [
    "services.nixarr-units: dependency cycle among"
    "services.nixarr-units.containers.b.health.port: the probe needs a container port published over tcp"
  ];
}
