{ lib }:
{
  description = "two Sonarr instances (one for 4K), a generic container, docker backend";
  config = {
    services.nixarr-units = {
      enable = true;
      backend = "docker";
      prefix = "media";
      stateDir = "/srv/media state";
      sonarr.enable = true;
      instances.sonarr-4k = {
        app = "sonarr";
        port = 8990;
        environment.SONARR__APP__INSTANCENAME = "Sonarr 4K";
      };
      containers.homepage = {
        image = "ghcr.io/gethomepage/homepage:v1.4.0";
        description = "Homepage dashboard";
        ports = [
          {
            host = 3000;
            container = 3000;
            address = "127.0.0.1";
          }
        ];
        volumes = [
          {
            host = "/srv/media state/homepage";
            container = "/app/config";
            create = true;
          }
        ];
        labels."org.example.owner" = "media-team";
        health = {
          http = "/api/healthcheck";
          port = 3000;
        };
        restart = "always";
        dependsOn = [ "sonarr" ];
      };
      containers.radarr-anime = {
        app = "radarr";
        ports = [
          {
            host = 7879;
            container = 7878;
          }
        ];
        health.enable = false;
      };
    };
  };
  checks =
    config:
    let
      spec = config.services.nixarr-units.spec;
    in
    {
      docker-enabled = config.virtualisation.docker.enable && !config.virtualisation.podman.enable;
      engine = spec.engine.path == "/nix/store/00000000000000000000000000000000-docker-27.5.1/bin/docker";
      both-sonarrs =
        spec.services.sonarr.app == "sonarr"
        && spec.services.sonarr-4k.app == "sonarr"
        && (builtins.head spec.services.sonarr-4k.ports).host == 8990;
      health-disabled = spec.services.radarr-anime ? health && spec.services.radarr-anime.health == null;
      health-kept = !(spec.services.sonarr ? health);
      target = config.systemd.targets.media.wantedBy == [ "multi-user.target" ];
      tmpfiles-escaped = lib.elem "d /srv/media\\x20state/homepage 0750 568 169 -" config.systemd.tmpfiles.rules;
      no-firewall = config.networking.firewall.allowedTCPPorts == [ ];
    };
}
