{ lib }:
{
  description = "nginx in front of Sonarr (sub-path, URL base set in its container) and Jellyfin (subdomain, ACME)";
  config = {
    services.nixarr-units = {
      sonarr = {
        enable = true;
        proxy.path = "/sonarr";
      };
      jellyfin = {
        enable = true;
        proxy.subdomain = "tv";
      };
      radarr.enable = true;
      proxy = {
        enable = true;
        domain = "media.example.org";
        acme = true;
      };
    };
  };
  checks =
    config:
    let
      hosts = config.services.nginx.virtualHosts;
      sonarr = hosts."media.example.org".locations."/sonarr";
      jellyfin = hosts."tv.media.example.org";
    in
    {
      nginx-enabled = config.services.nginx.enable && !config.services.caddy.enable;
      two-hosts = lib.attrNames hosts == [
        "media.example.org"
        "tv.media.example.org"
      ];
      sonarr-on-loopback = sonarr.proxyPass == "http://127.0.0.1:8989";
      websockets = sonarr.proxyWebsockets && jellyfin.locations."/".proxyWebsockets;
      forwarded-headers = sonarr.recommendedProxySettings;
      timeouts = lib.hasInfix "proxy_read_timeout 1h;" sonarr.extraConfig;
      security-headers = lib.hasInfix "add_header X-Frame-Options SAMEORIGIN always;" sonarr.extraConfig;
      body-size = jellyfin.extraConfig == "client_max_body_size 100m;";
      acme = jellyfin.enableACME && jellyfin.forceSSL;
      jellyfin-upstream = jellyfin.locations."/".proxyPass == "http://127.0.0.1:8096";
      firewall-80-443 = lib.all (p: lib.elem p config.networking.firewall.allowedTCPPorts) [
        80
        443
      ];
      spec-routes =
        config.services.nixarr-units.spec.proxy == {
          domain = "media.example.org";
          acme = true;
        }
        && config.services.nixarr-units.spec.services.sonarr.proxy == { path = "/sonarr"; }
        && !(config.services.nixarr-units.spec.services.radarr ? proxy);
    };
}
