{ lib }:
{
  description = "every catalog app, Gluetun VPN for the download clients, secrets from sops-nix by name and from plain files";
  config = {
    time.timeZone = "Europe/Berlin";
    # The user's sops-nix declarations; the module only reads them.
    sops.defaultSopsFile = "/etc/nixos/secrets.yaml";
    sops.secrets = {
      "vpn/wireguard-key" = { };
      "sonarr/api-key" = { };
      "radarr/api-key".sopsFile = "/etc/nixos/radarr.yaml";
      "lidarr/api-key" = { };
      # Not used by any container: left alone.
      "backup/password" = { };
    };
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
        secrets = {
          WIREGUARD_PRIVATE_KEY.sopsSecret = "vpn/wireguard-key";
          # A plain file (agenix, …); no sops-nix involved.
          WIREGUARD_PRESHARED_KEY.file = "/run/agenix/wg-psk";
        };
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
        secrets = {
          RADARR__AUTH__APIKEY.sopsSecret = "radarr/api-key";
          # A path literal: must reach the spec as a string, never copied
          # into the store.
          RADARR__POSTGRES__PASSWORD.file = /run/agenix/radarr-db;
        };
        environmentFiles = [ "/etc/nixarr/radarr.env" ];
      };
      lidarr = {
        enable = true;
        secrets.LIDARR__AUTH__APIKEY = {
          sopsSecret = "lidarr/api-key";
          mode = "podmanSecret";
        };
      };
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
        devices = [
          "/dev/dri:/dev/dri"
          {
            host = "/dev/ttyUSB0";
            container = "/dev/zigbee";
            permissions = "rw";
          }
        ];
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
      sabnzbd = {
        enable = true;
        # A secret shared by two apps: both units restart when it changes.
        secrets.SABNZBD_API_KEY = {
          sopsSecret = "sonarr/api-key";
          mode = "envFile";
          allowEnvironmentValue = true;
        };
      };
      seerr = {
        enable = true;
        dependsOn = [ "jellyfin" ];
        bindAddress = "127.0.0.1";
      };
    };
  };
  # The acknowledged exposure is said at build time.
  warnings = [ "services.nixarr-units.sabnzbd.secrets.SABNZBD_API_KEY: the value is delivered as an environment variable" ];
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
      gluetun-secrets =
        spec.services.gluetun.secrets == {
          WIREGUARD_PRIVATE_KEY.file = "/run/secrets/vpn/wireguard-key";
          WIREGUARD_PRESHARED_KEY.file = "/run/agenix/wg-psk";
        };
      sonarr-secrets = spec.services.sonarr.secrets == { SONARR__AUTH__APIKEY.file = "/run/secrets/sonarr/api-key"; };
      radarr-secrets =
        spec.services.radarr.secrets == {
          RADARR__AUTH__APIKEY.file = "/run/secrets/radarr/api-key";
          RADARR__POSTGRES__PASSWORD.file = "/run/agenix/radarr-db";
        };
      lidarr-podman-secret =
        spec.services.lidarr.secrets == {
          LIDARR__AUTH__APIKEY = {
            file = "/run/secrets/lidarr/api-key";
            mode = "podmanSecret";
          };
        };
      sabnzbd-env-file-mode = spec.services.sabnzbd.secrets.SABNZBD_API_KEY.mode == "envFile";
      no-secrets-without-secrets = !(spec.services.bazarr ? secrets) && !(spec.services.jellyfin ? secrets);
      # Secrets never become env files the module writes.
      gluetun-no-env-files = !(spec.services.gluetun ? environmentFiles) || spec.services.gluetun.environmentFiles == [ ];
      radarr-env-files = spec.services.radarr.environmentFiles == [ "/etc/nixarr/radarr.env" ];
      no-templates = config.sops.templates == { };
      restart-units = config.sops.secrets."vpn/wireguard-key".restartUnits == [ "nixarr-gluetun.service" ];
      restart-units-shared =
        lib.sort lib.lessThan config.sops.secrets."sonarr/api-key".restartUnits == [
          "nixarr-sabnzbd.service"
          "nixarr-sonarr.service"
        ];
      # The module declares no secret of its own.
      only-the-users-secrets = lib.attrNames config.sops.secrets == [
        "backup/password"
        "lidarr/api-key"
        "radarr/api-key"
        "sonarr/api-key"
        "vpn/wireguard-key"
      ];
      unused-secret-untouched = config.sops.secrets."backup/password".restartUnits == [ ];
      users-sops-file-kept = config.sops.secrets."radarr/api-key".sopsFile == "/etc/nixos/radarr.yaml";
      jellyfin-devices =
        spec.services.jellyfin.devices == [
          {
            host = "/dev/dri";
            container = "/dev/dri";
          }
          {
            host = "/dev/ttyUSB0";
            container = "/dev/zigbee";
            permissions = "rw";
          }
        ];
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
