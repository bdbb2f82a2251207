{ lib }:
{
  description = "podman: the stack network's bridge has a fixed name and the firewall opens DNS (53) on it, derived within 15 characters for a long prefix";
  config = {
    services.nixarr-units = {
      prefix = "media-stack-at-home";
      sonarr.enable = true;
      prowlarr.enable = true;
    };
  };
  checks =
    config:
    let
      spec = config.services.nixarr-units.spec;
    in
    {
      # The same name the binary derives (src/resolve.rs, default_interface).
      bridge-in-spec = spec.network == { interface = "br-media-s-e21a"; };
      dns-open-on-bridge =
        config.networking.firewall.interfaces == {
          br-media-s-e21a = {
            allowedUDPPorts = [ 53 ];
            allowedTCPPorts = [ 53 ];
          };
        };
      dns-not-open-everywhere =
        !(lib.elem 53 config.networking.firewall.allowedUDPPorts)
        && !(lib.elem 53 config.networking.firewall.allowedTCPPorts);
    };
}
