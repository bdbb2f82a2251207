{ lib }:
{
  description = "services.nixarr-units.bindAddress moves the closed ports to another address (not opened in the firewall)";
  config = {
    services.nixarr-units = {
      bindAddress = "10.8.0.1";
      sonarr.enable = true;
    };
  };
  checks = config: {
    on-bind-address = map (p: p.address) config.services.nixarr-units.spec.services.sonarr.ports == [ "10.8.0.1" ];
    not-opened = config.networking.firewall.allowedTCPPorts == [ ];
  };
}
