{ lib }:
{
  description = "openFirewall = false publishes on loopback (published ports bypass the firewall's INPUT chain); true publishes on every address and opens the port";
  config = {
    services.nixarr-units = {
      sonarr.enable = true;
      radarr = {
        enable = true;
        openFirewall = true;
      };
      prowlarr = {
        enable = true;
        # An address of its own wins over both.
        bindAddress = "10.8.0.1";
      };
      vpn = {
        enable = true;
        provider = "custom";
      };
      # Behind the VPN: Gluetun publishes its ports, on loopback.
      transmission = {
        enable = true;
        vpn = true;
      };
      containers.web = {
        image = "docker.io/library/nginx:1.27";
        ports = [
          { container = 80; host = 8081; }
          {
            container = 443;
            host = 8443;
            address = "192.168.1.10";
          }
        ];
      };
      # A catalog app as a generic container: the catalog's ports get an
      # address too.
      containers.lidarr-2 = {
        app = "lidarr";
        ports = null;
      };
    };
  };
  checks =
    config:
    let
      spec = config.services.nixarr-units.spec;
      addresses = svc: map (p: p.address or "*") spec.services.${svc}.ports;
    in
    {
      closed-on-loopback = addresses "sonarr" == [ "127.0.0.1" ];
      open-on-all = addresses "radarr" == [ "*" ];
      own-address = addresses "prowlarr" == [ "10.8.0.1" ];
      vpn-user-on-loopback = addresses "transmission" == [
        "127.0.0.1"
        "127.0.0.1"
        "127.0.0.1"
      ];
      gluetun-on-loopback = addresses "gluetun" == [ "127.0.0.1" ];
      container-ports = addresses "web" == [
        "127.0.0.1"
        "192.168.1.10"
      ];
      catalog-container = spec.services.lidarr-2.ports == [
        {
          host = 8686;
          container = 8686;
          protocol = "tcp";
          address = "127.0.0.1";
        }
      ];
      firewall-only-radarr = config.networking.firewall.allowedTCPPorts == [ 7878 ] && config.networking.firewall.allowedUDPPorts == [ ];
    };
}
