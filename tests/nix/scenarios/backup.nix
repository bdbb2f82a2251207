{ lib }:
{
  description = "scheduled backups in the spec, and the prepare command for restic or borg";
  config = {
    services.nixarr-units = {
      sonarr.enable = true;
      transmission.enable = true;
      backup = {
        dir = "/srv/backup/media";
        schedule = "*-*-* 03:30";
        keep = 3;
        allowStop = true;
      };
    };
  };
  checks = config: {
    spec-schedules-backups =
      config.services.nixarr-units.spec.backup == {
        schedule = "*-*-* 03:30";
        dir = "/srv/backup/media";
        keep = 3;
        allowStop = true;
      };
    prepare-command =
      lib.hasSuffix "/bin/nixarr-units backup --all --stack nixarr --to /srv/backup/media --keep 3 --allow-stop" config.services.nixarr-units.backupPrepareCommand;
    catalog-backup-facts-stay-in-the-catalog = !(config.services.nixarr-units.spec.services.sonarr ? backup);
  };
}
