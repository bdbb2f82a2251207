# A `nixos-rebuild switch` that changes one option of one container
# (variant "changed": beta's environment); the others' units stay the same.
{
  lib,
  image,
  variant,
  ...
}:
let
  app = import ./common.nix { inherit image; };
in
{
  description = "switch: one container's option changes";
  config.services.nixarr-units.containers = {
    alpha = app 8381 { };
    beta = app 8382 {
      environment = {
        FAKE_STYLE = "arr";
        GENERATION = if variant == "changed" then "2" else "1";
      };
    };
    gamma = app 8383 { dependsOn = [ "alpha" ]; };
  };
}
