{ lib }:
{
  description = "assertion: a VPN service while the VPN is disabled";
  config = {
    services.nixarr-units = {
      enable = true;
      qbittorrent = {
        enable = true;
        vpn = true;
      };
    };
  };
  assertions = [
    "services.nixarr-units.qbittorrent.vpn is true but services.nixarr-units.vpn.enable is false"
  ];
}
