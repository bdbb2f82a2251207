{ lib }:
{
  description = "one app (Sonarr) with defaults and an open firewall; enabling it is all it takes";
  config = {
    services.nixarr-units = {
      sonarr = {
        enable = true;
        openFirewall = true;
      };
    };
  };
  checks = config: {
    only-sonarr = lib.attrNames config.services.nixarr-units.spec.services == [ "sonarr" ];
    podman-enabled = config.virtualisation.podman.enable && !config.virtualisation.docker.enable;
    engine-from-package =
      config.services.nixarr-units.spec.engine == {
        path = "/nix/store/00000000000000000000000000000000-podman-5.4.2/bin/podman";
        version = "5.4.2";
      };
    firewall = config.networking.firewall.allowedTCPPorts == [ 8989 ];
    units-installed = config.systemd.packages == [ config.services.nixarr-units.units ];
    started-at-boot = config.systemd.targets.nixarr.wantedBy == [ "multi-user.target" ];
    manifest-in-etc = lib.hasSuffix "/share/nixarr-units/manifest.json" config.environment.etc."nixarr-units/manifest.json".source;
    render-command = lib.hasInfix "nixarr-units render --spec" config.services.nixarr-units.units.script;
    media-group = config.users.groups.media.gid == 169;
    # The container's config directory follows its uid; the user's trees are
    # only created (`:`), so a later chown or chmod of theirs stays.
    tmpfiles =
      lib.sort lib.lessThan config.systemd.tmpfiles.rules == [
        "d /data :2775 :root :media -"
        "d /var/lib/nixarr :0755 :root :root -"
        "d /var/lib/nixarr/sonarr 0750 568 169 -"
      ];
    package-installed = map (p: p.name) config.environment.systemPackages == [ "nixarr-units-0.1.0" ];
  };
}
