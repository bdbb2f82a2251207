{ lib }:
{
  description = "assertion: a sopsSecret that sops-nix does not declare (a typo) is named, not silently declared";
  config = {
    sops.defaultSopsFile = "/etc/nixos/secrets.yaml";
    sops.secrets."sonarr/api-key" = { };
    services.nixarr-units.sonarr = {
      enable = true;
      secrets.SONARR__AUTH__APIKEY.sopsSecret = "sonarr/api-kye";
    };
  };
  assertions = [
    "services.nixarr-units.sonarr.secrets.SONARR__AUTH__APIKEY.sopsSecret = \"sonarr/api-kye\": sops-nix has no secret of that name. Declare it where you keep your sops secrets (sops.secrets.\"sonarr/api-kye\" = { }; with its sopsFile, or sops.defaultSopsFile), or correct the name (declared: sonarr/api-key)"
  ];
}
