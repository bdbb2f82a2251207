{ lib }:
{
  description = "assertions: a podman secret with the docker backend; a VPN secret clashing with a provider setting";
  config = {
    sops.defaultSopsFile = "/etc/nixos/secrets.yaml";
    sops.secrets."vpn/wireguard-key" = { };
    services.nixarr-units = {
      enable = true;
      backend = "docker";
      vpn = {
        enable = true;
        provider = "mullvad";
        secrets.WIREGUARD_PRIVATE_KEY = {
          sopsSecret = "vpn/wireguard-key";
          mode = "podmanSecret";
        };
        # Set from `provider`, not by the user's environment.
        secrets.VPN_SERVICE_PROVIDER.file = "/run/agenix/provider";
      };
    };
  };
  assertions = [
    "services.nixarr-units.vpn.secrets.VPN_SERVICE_PROVIDER: `VPN_SERVICE_PROVIDER` is also set by nixarr-units for this container (TZ, HTTP_CONTROL_SERVER_ADDRESS, VPN_SERVICE_PROVIDER, VPN_TYPE)"
    "services.nixarr-units.vpn.secrets.WIREGUARD_PRIVATE_KEY.mode = \"podmanSecret\" needs the podman backend, but services.nixarr-units.backend is \"docker\""
  ];
}
