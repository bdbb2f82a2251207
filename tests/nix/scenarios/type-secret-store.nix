{ lib }:
{
  description = "type error: a secret's file in the (world-readable) Nix store";
  config = {
    services.nixarr-units = {
      enable = true;
      containers.app = {
        image = "docker.io/library/nginx:1.27";
        # The store of the evaluating Nix: /nix/store, or the private one of
        # the flake's module-eval check (tests/nix/private-store.sh).
        secrets.API_KEY.file = "${builtins.storeDir}/00000000000000000000000000000000-api-key";
      };
    };
  };
  evalError = "services.nixarr-units.containers.app.secrets.API_KEY.file";
}
