{ lib }:
{
  description = "assertion: two services on one host port";
  config = {
    services.nixarr-units = {
      enable = true;
      sonarr = {
        enable = true;
        port = 8080;
      };
      qbittorrent.enable = true;
    };
  };
  assertions = [
    "services.nixarr-units.qbittorrent.port and services.nixarr-units.sonarr.port both use host port 8080/tcp"
  ];
}
