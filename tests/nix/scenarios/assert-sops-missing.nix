{ lib }:
{
  description = "assertion: secrets given by sops secret name without sops-nix";
  sops = false;
  config = {
    services.nixarr-units = {
      enable = true;
      sonarr = {
        enable = true;
        secrets.SONARR__AUTH__APIKEY.sopsSecret = "sonarr/api-key";
      };
    };
  };
  assertions = [ "services.nixarr-units.sonarr.secrets needs sops-nix" ];
}
