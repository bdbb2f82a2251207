# openFirewall: `closed` (the default, false) must not be reachable from
# another host, only from the machine itself; `open` must be reachable.
{
  lib,
  image,
  ...
}:
let
  app = import ./common.nix { inherit image; };
in
{
  description = "one app with openFirewall = false, one with openFirewall = true";
  config.services.nixarr-units.containers = {
    closed = app 8181 { };
    open = app 8182 { openFirewall = true; };
  };
}
