//! One SQLite database copied while its app writes to it: SQLite's online
//! backup API (the bundled SQLite, so the result does not depend on the
//! host's), then `PRAGMA integrity_check` of the copy.
//!
//! The whole database is copied in one backup step, inside one read
//! transaction of the source: in WAL mode the app's writers go on while it
//! runs, and the copy is the database as of the moment that transaction
//! began (every row committed before, none after). Copying in small steps
//! would let each of the app's commits restart the copy from the first page.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

/// What copying one database found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Pages in the copy.
    pub pages: u64,
    /// `PRAGMA integrity_check` of the copy: "ok", or its first complaints.
    pub integrity: String,
    /// How long the source stayed busy before the copy could begin.
    pub waited: Duration,
}

/// The source stayed locked past the bound (an app holding an exclusive
/// lock, a WAL recovery that does not end).
#[derive(Debug)]
pub struct Busy {
    pub db: String,
    pub waited: Duration,
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} stayed locked for {:.1}s",
            self.db,
            self.waited.as_secs_f64()
        )
    }
}
impl std::error::Error for Busy {}

/// Open the app's database without changing it: read-only, so nothing is
/// checkpointed on close. (A WAL database whose app is stopped still gets
/// a `-wal` and `-shm` beside it; see [`SideFiles`].)
fn open_source(src: &Path) -> Result<Connection> {
    let c = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {} read-only", src.display()))?;
    // Busy is handled by the caller's bound, step by step.
    c.busy_timeout(Duration::from_millis(50))?;
    Ok(c)
}

/// Copy the database `src` into the new file `dst` (which must not exist)
/// with the online backup API, waiting at most `bound` for a lock, then
/// check the copy. A [`Busy`] error (downcast it) when the bound passed.
pub fn copy_database(src: &Path, dst: &Path, bound: Duration) -> Result<Copied> {
    let (pages, waited) = copy_pages(src, dst, bound)?;
    let integrity = check_file(dst)?;
    Ok(Copied {
        pages,
        integrity,
        waited,
    })
}

/// The copy of [`copy_database`] without its check: (pages, time waited
/// for a lock). The copy is one file (no `-wal` or `-shm` left beside it).
pub fn copy_pages(src: &Path, dst: &Path, bound: Duration) -> Result<(u64, Duration)> {
    if dst.exists() {
        bail!("{} already exists", dst.display());
    }
    let sides = SideFiles::before(src);
    let from = open_source(src)?;
    let mut to = Connection::open(dst).with_context(|| format!("creating {}", dst.display()))?;
    let started = Instant::now();
    let mut waited = Duration::ZERO;
    {
        let backup = Backup::new(&from, &mut to)
            .with_context(|| format!("starting the backup of {}", src.display()))?;
        loop {
            match backup
                .step(-1)
                .with_context(|| format!("copying {}", src.display()))?
            {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked => {
                    waited = started.elapsed();
                    if waited >= bound {
                        return Err(Busy {
                            db: src.display().to_string(),
                            waited,
                        }
                        .into());
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => bail!(
                    "copying {}: unexpected step result {other:?}",
                    src.display()
                ),
            }
        }
    }
    drop(from);
    sides.give_to_owner(src)?;
    let pages: i64 = to.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let pages = u64::try_from(pages).unwrap_or_default();
    to.close()
        .map_err(|(_, e)| e)
        .with_context(|| format!("closing {}", dst.display()))?;
    // The copy keeps the source's journal mode (WAL for the apps): closing
    // the only connection checkpointed and removed its -wal and -shm.
    for suffix in ["-wal", "-shm"] {
        let side = side_file(dst, suffix);
        if side.exists() {
            bail!(
                "{} was left beside the copy; the copy is not a single file",
                side.display()
            );
        }
    }
    Ok((pages, waited))
}

/// The `-wal` and `-shm` files beside a database before we opened it: those
/// SQLite creates for our connection are given the database's owner and
/// mode, so the app (another uid) can open them later.
struct SideFiles(Vec<(std::path::PathBuf, bool)>);

impl SideFiles {
    fn before(db: &Path) -> Self {
        SideFiles(
            ["-wal", "-shm"]
                .iter()
                .map(|s| {
                    let p = side_file(db, s);
                    let existed = p.symlink_metadata().is_ok();
                    (p, existed)
                })
                .collect(),
        )
    }

    fn give_to_owner(&self, db: &Path) -> Result<()> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = fs_err::metadata(db)?;
        for (p, existed) in &self.0 {
            if *existed || p.symlink_metadata().is_err() {
                continue;
            }
            std::os::unix::fs::lchown(p, Some(meta.uid()), Some(meta.gid()))
                .with_context(|| format!("chown {}", p.display()))?;
            fs_err::set_permissions(p, std::fs::Permissions::from_mode(meta.mode() & 0o666))?;
        }
        Ok(())
    }
}

/// `PRAGMA integrity_check` of an open database: "ok", or the first ten
/// complaints joined.
fn integrity_check(c: &Connection) -> Result<String> {
    let mut stmt = c.prepare("PRAGMA integrity_check(10)")?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows.join("; "))
}

/// `PRAGMA integrity_check` of a database file nothing else writes to (a
/// copy): opened immutable, so nothing is created beside it.
pub fn check_file(path: &Path) -> Result<String> {
    let mut url = url_path(path)?;
    url.insert_str(0, "file:");
    url.push_str("?immutable=1");
    let c = Connection::open_with_flags(
        &url,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {} to check it", path.display()))?;
    integrity_check(&c)
}

/// A path as the path of a `file:` URI: `%`, `?` and `#` escaped.
fn url_path(path: &Path) -> Result<String> {
    let s = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// `db-wal`, `db-shm`, `db-journal` beside `db`.
pub fn side_file(db: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(suffix);
    std::path::PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    fn wal_db(path: &Path) -> Connection {
        let c = Connection::open(path).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.execute_batch("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)")
            .unwrap();
        c
    }

    /// A writer commits rows the whole time: the copy holds every row
    /// committed before it began, passes the integrity check, and is one
    /// file.
    #[test]
    fn copies_a_database_that_is_being_written() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("app.db");
        let c = wal_db(&src);
        for _ in 0..2000 {
            c.execute("INSERT INTO t (v) VALUES (randomblob(512))", [])
                .unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(AtomicU64::new(2000));
        let writer = {
            let (stop, committed, src) = (stop.clone(), committed.clone(), src.clone());
            std::thread::spawn(move || {
                let c = wal_db(&src);
                while !stop.load(Ordering::SeqCst) {
                    c.execute("INSERT INTO t (v) VALUES (randomblob(512))", [])
                        .unwrap();
                    committed.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        let before = committed.load(Ordering::SeqCst);
        // A name a `file:` URI must escape.
        let dst = t.path().join("copy #1?%.db");
        let copied = copy_database(&src, &dst, Duration::from_secs(10)).unwrap();
        assert!(!side_file(&dst, "-wal").exists() && !side_file(&dst, "-shm").exists());
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();
        assert_eq!(copied.integrity, "ok");
        assert!(copied.pages > 0);
        let rows: i64 = Connection::open(&dst)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert!(
            rows as u64 >= before,
            "{rows} rows, {before} committed before"
        );
        assert!(!side_file(&dst, "-wal").exists());
        assert_eq!(check_file(&dst).unwrap(), "ok");
        // The source was not touched: its WAL is still the writer's.
        assert!(side_file(&src, "-wal").exists());
    }

    /// An exclusive lock held past the bound is Busy, not a hang.
    #[test]
    fn a_locked_database_is_busy_past_the_bound() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("app.db");
        let c = Connection::open(&src).unwrap();
        c.execute_batch("CREATE TABLE t (id INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();
        c.execute_batch("PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE;")
            .unwrap();
        let err =
            copy_database(&src, &t.path().join("copy.db"), Duration::from_millis(300)).unwrap_err();
        assert!(err.downcast_ref::<Busy>().is_some(), "{err:#}");
    }

    /// A WAL database whose app is stopped (no -wal, no -shm): what SQLite
    /// creates beside it for our connection belongs to the database's owner.
    #[test]
    fn a_closed_wal_database_keeps_its_owner() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("app.db");
        let c = wal_db(&src);
        c.execute("INSERT INTO t (v) VALUES (x'00')", []).unwrap();
        drop(c);
        assert!(!side_file(&src, "-wal").exists());
        let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
        if root {
            std::os::unix::fs::lchown(&src, Some(4321), Some(4322)).unwrap();
        }
        let copied = copy_database(&src, &t.path().join("copy.db"), Duration::from_secs(5));
        assert_eq!(copied.unwrap().integrity, "ok");
        for s in ["-wal", "-shm"] {
            if let Ok(m) = std::fs::metadata(side_file(&src, s)) {
                let want = if root { 4321 } else { m.uid() };
                assert_eq!(m.uid(), want, "{s}");
            }
        }
    }
}
