# Two containers on the stack network that talk to each other by name, and
# resolve a name only the host's resolver knows (through the engine's DNS).
{
  lib,
  image,
  ...
}:
let
  app = import ./common.nix { inherit image; };
in
{
  description = "two containers resolve each other and the host's names, firewall on";
  config.services.nixarr-units.containers = {
    alpha = app 8281 { };
    beta = app 8282 { };
  };
}
