{ lib }:
{
  description = "a proxied app without the proxy enabled, and a proxy without a domain";
  config = {
    services.nixarr-units = {
      sonarr = {
        enable = true;
        proxy.subdomain = "sonarr";
      };
    };
  };
  assertions = [
    "services.nixarr-units.sonarr.proxy: services.nixarr-units.proxy.enable is false"
  ];
}
