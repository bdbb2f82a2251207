{ lib }:
{
  description = "assertions: bad and duplicate names, unknown dependency, bad environment names, missing image";
  config = {
    services.nixarr-units = {
      enable = true;
      radarr.enable = true;
      containers."Bad_Name".image = "docker.io/library/nginx:1.27";
      containers.network.image = "docker.io/library/nginx:1.27";
      containers.radarr.image = "docker.io/library/nginx:1.27";
      containers.noimage = {
        environment."1BAD" = "x";
        dependsOn = [ "sonar" ];
      };
    };
  };
  assertions = [
    "services.nixarr-units.containers.Bad_Name: `Bad_Name` is not a valid service name"
    "services.nixarr-units.containers.network: `network` is not a valid service name"
    "Container `radarr` is defined more than once: services.nixarr-units.radarr and services.nixarr-units.containers.radarr"
    "services.nixarr-units.containers.noimage: `1BAD` is not a valid environment variable name"
    "services.nixarr-units.containers.noimage.dependsOn: `sonar` is not an enabled container"
    "services.nixarr-units.containers.noimage.image: missing"
  ];
}
