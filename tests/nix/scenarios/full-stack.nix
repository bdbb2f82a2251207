{ lib }:
{
  description = "every catalog app, Gluetun VPN for the download clients, secrets from sops-nix";
  config = {
    time.timeZone = "Europe/Berlin";
    services.nixarr-units = {
      enable = true;
      openFirewall = true;
      vpn = {
        enable = true;
        provider = "mullvad";
        serverCountries = [
          "Netherlands"
          "Sweden"
        ];
        secrets.WIREGUARD_PRIVATE_KEY.sopsSecret = "vpn/wireguard-key";
        environment.WIREGUARD_ADDRESSES = "10.64.0.2/32";
      };
      sonarr = {
        enable = true;
        dependsOn = [ "prowlarr" ];
        secrets.SONARR__AUTH__APIKEY.sopsSecret = "sonarr/api-key";
      };
      radarr = {
        enable = true;
        dependsOn = [ "prowlarr" ];
        secrets.RADARR__AUTH__APIKEY.sopsSecret = "radarr/api-key";
        environmentFiles = [ "/run/agenix/radarr.env" ];
      };
      lidarr.enable = true;
      prowlarr = {
        enable = true;
        vpn = true;
      };
      bazarr = {
        enable = true;
        dependsOn = [
          "sonarr"
          "radarr"
        ];
      };
      jellyfin = {
        enable = true;
        devices = [ "/dev/dri:/dev/dri" ];
      };
      qbittorrent = {
        enable = true;
        vpn = true;
      };
      transmission = {
        enable = true;
        vpn = true;
        port = 9092;
      };
      sabnzbd.enable = true;
      seerr = {
        enable = true;
        dependsOn = [ "jellyfin" ];
        bindAddress = "127.0.0.1";
      };
    };
  };
  checks =
    config:
    let
      spec = config.services.nixarr-units.spec;
    in
    {
      all-services =
        lib.attrNames spec.services == [
          "bazarr"
          "gluetun"
          "jellyfin"
          "lidarr"
          "prowlarr"
          "qbittorrent"
          "radarr"
          "sabnzbd"
          "seerr"
          "sonarr"
          "transmission"
        ];
      tz-from-time-zone = spec.defaults.tz == "Europe/Berlin";
      gluetun-env =
        spec.services.gluetun.environment == {
          VPN_SERVICE_PROVIDER = "mullvad";
          VPN_TYPE = "wireguard";
          SERVER_COUNTRIES = "Netherlands,Sweden";
          WIREGUARD_ADDRESSES = "10.64.0.2/32";
        };
      no-secrets-key = lib.all (s: !(s ? secrets)) (lib.attrValues spec.services);
      gluetun-env-file = spec.services.gluetun.environmentFiles == [ "/run/secrets/rendered/nixarr-gluetun.env" ];
      radarr-env-files =
        spec.services.radarr.environmentFiles == [
          "/run/agenix/radarr.env"
          "/run/secrets/rendered/nixarr-radarr.env"
        ];
      template =
        config.sops.templates."nixarr-sonarr.env".content
        == "SONARR__AUTH__APIKEY=<SOPS:sonarr/api-key:PLACEHOLDER>\n";
      restart-units = config.sops.secrets."vpn/wireguard-key".restartUnits == [ "nixarr-gluetun.service" ];
      restart-units-sonarr = config.sops.secrets."sonarr/api-key".restartUnits == [ "nixarr-sonarr.service" ];
      vpn-flags = spec.services.qbittorrent.vpn && spec.services.prowlarr.vpn && !spec.services.sonarr.vpn;
      transmission-port = (builtins.head spec.services.transmission.ports).host == 9092;
      firewall-tcp =
        lib.sort lib.lessThan config.networking.firewall.allowedTCPPorts == [
          6767
          6881
          7878
          8080
          8085
          8096
          8686
          8989
          9092
          9696
          51413
        ];
      firewall-udp =
        lib.sort lib.lessThan config.networking.firewall.allowedUDPPorts == [
          6881
          51413
        ];
      seerr-uid-dir = lib.elem "d /var/lib/nixarr/seerr 0750 1000 1000 -" config.systemd.tmpfiles.rules;
    };
}
