{ lib }:
{
  description = "reconcile.enable: the spec asks for the reconcile timer with the interval and prune given, and the binary renders <prefix>-reconcile.timer and its service";
  config = {
    services.nixarr-units = {
      prefix = "media";
      reconcile = {
        enable = true;
        interval = "10m";
        prune = true;
      };
      sonarr.enable = true;
    };
  };
  checks = config: {
    spec-asks =
      config.services.nixarr-units.spec.reconcile == {
        interval = "10m";
        prune = true;
      };
  };
}
