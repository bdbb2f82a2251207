{ lib }:
{
  description = "assertion: a secret given by sops secret name without sops-nix (a plain file is fine)";
  sops = false;
  config = {
    services.nixarr-units = {
      enable = true;
      sonarr = {
        enable = true;
        secrets.SONARR__AUTH__APIKEY.sopsSecret = "sonarr/api-key";
        secrets.SONARR__POSTGRES__PASSWORD.file = "/run/agenix/sonarr-db";
      };
    };
  };
  assertions = [
    "services.nixarr-units.sonarr.secrets.SONARR__AUTH__APIKEY.sopsSecret = \"sonarr/api-key\" needs sops-nix, whose NixOS module is not imported: add sops-nix.nixosModules.sops"
  ];
}
