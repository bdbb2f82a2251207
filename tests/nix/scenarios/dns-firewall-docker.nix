{ lib }:
{
  description = "docker: the bridge is named, but no port 53 is opened (Docker's DNS server runs inside each container's network namespace)";
  config = {
    services.nixarr-units = {
      backend = "docker";
      sonarr.enable = true;
    };
  };
  checks = config: {
    bridge-in-spec = config.services.nixarr-units.spec.network == { interface = "br-nixarr"; };
    no-dns-rule = config.networking.firewall.interfaces == { };
  };
}
