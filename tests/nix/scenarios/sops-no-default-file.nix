{ lib }:
{
  description = "sops-nix without sops.defaultSopsFile: a secret declared with its own sopsFile is used as is (the module creates none that would need the default)";
  config = {
    sops.secrets."sonarr/api-key".sopsFile = "/etc/nixos/sonarr.yaml";
    services.nixarr-units.sonarr = {
      enable = true;
      secrets.SONARR__AUTH__APIKEY.sopsSecret = "sonarr/api-key";
    };
  };
  checks = config: {
    path = config.services.nixarr-units.spec.services.sonarr.secrets.SONARR__AUTH__APIKEY.file == "/run/secrets/sonarr/api-key";
    restart = config.sops.secrets."sonarr/api-key".restartUnits == [ "nixarr-sonarr.service" ];
  };
}
