{ lib }:
{
  description = "type error: a secret's file in the (world-readable) Nix store";
  config = {
    services.nixarr-units = {
      enable = true;
      containers.app = {
        image = "docker.io/library/nginx:1.27";
        secrets.API_KEY.file = "/nix/store/00000000000000000000000000000000-api-key";
      };
    };
  };
  evalError = "services.nixarr-units.containers.app.secrets.API_KEY.file";
}
