{ lib }:
{
  description = "Caddy in front of two apps on one domain (sub-paths) over plain HTTP";
  config = {
    services.nixarr-units = {
      sonarr = {
        enable = true;
        proxy.path = "/sonarr";
      };
      radarr = {
        enable = true;
        proxy.path = "/radarr";
      };
      proxy = {
        enable = true;
        provider = "caddy";
        domain = "media.lan";
      };
    };
  };
  checks =
    config:
    let
      site = config.services.caddy.virtualHosts."http://media.lan".extraConfig;
    in
    {
      caddy-enabled = config.services.caddy.enable && !config.services.nginx.enable;
      one-site = lib.attrNames config.services.caddy.virtualHosts == [ "http://media.lan" ];
      both-paths =
        lib.hasInfix "@radarr path /radarr /radarr/*" site
        && lib.hasInfix "@sonarr path /sonarr /sonarr/*" site;
      upstreams = lib.hasInfix "reverse_proxy 127.0.0.1:8989 {" site && lib.hasInfix "reverse_proxy 127.0.0.1:7878 {" site;
      timeouts = lib.hasInfix "read_timeout 1h" site;
      body-size = lib.hasInfix "max_size 100MB" site;
      headers = lib.hasInfix "X-Content-Type-Options nosniff" site;
      only-port-80 = lib.elem 80 config.networking.firewall.allowedTCPPorts && !(lib.elem 443 config.networking.firewall.allowedTCPPorts);
    };
}
