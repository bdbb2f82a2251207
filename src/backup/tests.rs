use super::*;
use std::os::unix::fs::MetadataExt;

fn facts(root: &Path) -> BackupFacts {
    BackupFacts {
        root: root.display().to_string(),
        databases: vec!["app.db".into(), "logs.db".into()],
        paths: vec![],
        exclude: vec!["logs".into()],
    }
}

fn subject(root: &Path) -> Subject {
    Subject {
        service: "sonarr".into(),
        app: Some("sonarr".into()),
        image: "localhost/app:test".into(),
        image_id: Some("sha256:abc".into()),
        image_digest: None,
        facts: facts(root),
    }
}

/// An online backup of the app at `root` taken at `now`.
fn take_online(sd: &ServiceDir, root: &Path, now: SystemTime) -> (PathBuf, BackupManifest) {
    take(
        sd,
        &subject(root),
        Method::Online,
        Duration::from_secs(5),
        now,
    )
    .unwrap()
}

fn app_dir(t: &Path) -> PathBuf {
    let root = t.join("app");
    std::fs::create_dir_all(root.join("logs")).unwrap();
    std::fs::create_dir_all(root.join("MediaCover/1")).unwrap();
    std::fs::write(root.join("config.xml"), "<Config/>").unwrap();
    std::fs::write(root.join("logs/sonarr.txt"), "log").unwrap();
    std::fs::write(root.join("MediaCover/1/poster.jpg"), "jpg").unwrap();
    let c = rusqlite::Connection::open(root.join("app.db")).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.execute_batch("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('a'), ('b');")
        .unwrap();
    // Left open: the -wal and -shm exist, as beside a running app.
    std::mem::forget(c);
    root
}

#[test]
fn a_backup_holds_files_and_databases_with_a_manifest() {
    let t = tempfile::tempdir().unwrap();
    let root = app_dir(t.path());
    let sd = ServiceDir::open(&t.path().join("backups"), "sonarr").unwrap();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_588_803);
    let (dir, m) = take_online(&sd, &root, now);
    assert_eq!(dir, sd.path.join("20251201T113323Z"));
    let data = dir.join(DATA);
    assert_eq!(
        std::fs::read_to_string(data.join("config.xml")).unwrap(),
        "<Config/>"
    );
    assert!(data.join("MediaCover/1/poster.jpg").is_file());
    assert!(!data.join("logs").exists(), "excluded");
    assert!(!data.join("app.db-wal").exists(), "a database is one file");
    assert_eq!(m.databases.len(), 1);
    assert_eq!(m.databases[0].integrity_check, "ok");
    assert_eq!(m.missing_databases, ["logs.db"]);
    assert_eq!(m.image_id.as_deref(), Some("sha256:abc"));
    let rows: i64 = rusqlite::Connection::open(data.join("app.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 2);
    std::fs::remove_file(data.join("app.db-wal")).ok();
    std::fs::remove_file(data.join("app.db-shm")).ok();
    let cfg = m
        .files
        .iter()
        .find(|f| f.entry.path == "config.xml")
        .unwrap();
    let want = format!("{:x}", Sha256::digest(b"<Config/>"));
    assert_eq!(cfg.sha256.as_deref(), Some(want.as_str()));
    assert_eq!(verify(&dir).unwrap(), m);
    // The same second again: another directory, not an overwrite.
    let (second, _) = take_online(&sd, &root, now);
    assert_eq!(second, sd.path.join("20251201T113323Z-1"));
}

#[test]
fn verify_finds_changed_added_and_missing_files() {
    let t = tempfile::tempdir().unwrap();
    let root = app_dir(t.path());
    let sd = ServiceDir::open(&t.path().join("backups"), "sonarr").unwrap();
    let (dir, _) = take_online(&sd, &root, SystemTime::now());
    let data = dir.join(DATA);
    std::fs::write(data.join("config.xml"), "<Config x/>").unwrap();
    let e = verify(&dir).unwrap_err().to_string();
    assert!(
        e.contains("config.xml") && e.contains("not what its manifest says"),
        "{e}"
    );
    std::fs::write(data.join("config.xml"), "<Confiq/>").unwrap();
    let e = verify(&dir).unwrap_err().to_string();
    assert!(e.contains("is damaged: sha256"), "{e}");
    std::fs::write(data.join("config.xml"), "<Config/>").unwrap();
    std::fs::write(data.join("extra"), "").unwrap();
    let e = verify(&dir).unwrap_err().to_string();
    assert!(e.contains("does not list"), "{e}");
    std::fs::remove_file(data.join("extra")).unwrap();
    std::fs::remove_file(data.join("config.xml")).unwrap();
    let e = verify(&dir).unwrap_err().to_string();
    assert!(e.contains("lacks config.xml"), "{e}");
    let e = verify(&t.path().join("nothing")).unwrap_err().to_string();
    assert!(e.contains("is not a backup"), "{e}");
}

#[test]
fn owners_and_modes_are_kept() {
    let t = tempfile::tempdir().unwrap();
    let root = app_dir(t.path());
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        return; // chown needs root (the suite runs as root)
    }
    std::os::unix::fs::lchown(root.join("app.db"), Some(568), Some(169)).unwrap();
    std::os::unix::fs::lchown(root.join("config.xml"), Some(568), Some(169)).unwrap();
    let sd = ServiceDir::open(&t.path().join("backups"), "sonarr").unwrap();
    let (dir, _) = take_online(&sd, &root, SystemTime::now());
    for f in ["app.db", "config.xml"] {
        let m = std::fs::metadata(dir.join(DATA).join(f)).unwrap();
        assert_eq!((m.uid(), m.gid()), (568, 169), "{f}");
    }
}

#[test]
fn retention_keeps_the_newest() {
    let t = tempfile::tempdir().unwrap();
    let root = app_dir(t.path());
    let sd = ServiceDir::open(&t.path().join("backups"), "sonarr").unwrap();
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_588_803);
    for i in 0..4 {
        take_online(&sd, &root, base + Duration::from_secs(i * 60));
    }
    // A killed run's leftover is not a backup, and is cleaned.
    std::fs::create_dir(sd.path.join(".20251201T120000Z.partial")).unwrap();
    let removed = sd.prune(2).unwrap();
    assert_eq!(removed.len(), 2);
    let left: Vec<String> = sd
        .backups()
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["20251201T113523Z", "20251201T113623Z"]);
    take_online(&sd, &root, SystemTime::now());
    assert!(!sd.path.join(".20251201T120000Z.partial").exists());
}

#[test]
fn coverage_rules() {
    let mut f = facts(Path::new("/x"));
    assert!(covers(&f, "config.xml"));
    assert!(!covers(&f, "logs"));
    assert!(!covers(&f, "logs/a.txt"));
    assert!(covers(&f, "logsx"));
    f.paths = vec!["db/bazarr.db".into(), "config".into()];
    assert!(covers(&f, "db"), "a directory above a chosen path");
    assert!(covers(&f, "db/bazarr.db"));
    assert!(!covers(&f, "db/other"));
    assert!(covers(&f, "config/config.yaml"));
    assert!(!covers(&f, "cache"));
    assert!(is_database_file("app.db-wal", &["app.db".into()]));
    assert!(!is_database_file("app.dbx", &["app.db".into()]));
    assert!(is_backup_name("20251201T113323Z"));
    assert!(is_backup_name("20251201T113323Z-12"));
    assert!(!is_backup_name(".20251201T113323Z.partial"));
    assert!(!is_backup_name("lock"));
}

#[test]
fn backup_directories_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let sd = ServiceDir::open(&t.path().join("new/backups"), "sonarr").unwrap();
    for d in [t.path().join("new/backups"), sd.path.clone()] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
    // A second run, while the first holds the lock, is refused.
    let e = ServiceDir::open(&t.path().join("new/backups"), "sonarr")
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .contains("another backup of sonarr is running"),
        "{e}"
    );
}
