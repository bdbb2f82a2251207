//! Backup benchmark (issue 19; see benches/README.md): an SQLite database
//! in WAL mode (1 GiB by default) written to by another process the whole
//! time (`sqlite3` inserting a 1 KiB row every few milliseconds, one
//! connection, as an app does), backed up by nixarr-units' copy (the online
//! backup API in one step inside one read transaction, bundled SQLite) and
//! by `sqlite3 DB ".backup FILE"` of the same database, alternately, and
//! printed side by side. `backup` also runs `PRAGMA integrity_check` of the
//! copy and hashes it (sha256) for its manifest: those are timed apart.
//!
//! `cargo bench --bench backup -- [--size-mib N] [--runs N] [--dir DIR]
//! [--write-interval-ms N] [--sqlite3-timeout S]`. Under `cargo test` (no
//! `--bench`) it only says how to run it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nixarr_units::backup::sqlite;

struct Args {
    size_mib: u64,
    runs: usize,
    dir: PathBuf,
    write_interval: Duration,
    sqlite3_timeout: Duration,
}

fn args() -> Result<Option<Args>> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if !argv.iter().any(|a| a == "--bench") {
        return Ok(None);
    }
    let mut a = Args {
        size_mib: 1024,
        runs: 3,
        dir: PathBuf::from("/var/tmp"),
        write_interval: Duration::from_millis(5),
        sqlite3_timeout: Duration::from_secs(600),
    };
    let mut it = argv.iter().filter(|a| *a != "--bench");
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--size-mib" => a.size_mib = value()?.parse()?,
            "--runs" => a.runs = value()?.parse()?,
            "--dir" => a.dir = PathBuf::from(value()?),
            "--write-interval-ms" => a.write_interval = Duration::from_millis(value()?.parse()?),
            "--sqlite3-timeout" => a.sqlite3_timeout = Duration::from_secs(value()?.parse()?),
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(Some(a))
}

/// A WAL database of about `mib` MiB: rows of 4 KiB of random bytes.
fn make_db(path: &Path, mib: u64) -> Result<()> {
    let mut c = rusqlite::Connection::open(path)?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")?;
    let rows = mib * 256;
    let mut done = 0;
    while done < rows {
        let tx = c.transaction()?;
        for _ in 0..4096.min(rows - done) {
            tx.execute("INSERT INTO t (v) VALUES (randomblob(4096))", [])?;
        }
        tx.commit()?;
        done += 4096.min(rows - done);
    }
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    Ok(())
}

/// Another process writing all the time: `sqlite3` reading INSERTs from a
/// pipe, one every `interval`.
fn start_writer(db: &Path, interval: Duration) -> Result<(Child, std::thread::JoinHandle<()>)> {
    let mut child = Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("starting sqlite3 (apt-get install sqlite3)")?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    let feeder = std::thread::spawn(move || {
        while stdin
            .write_all(b"INSERT INTO t (v) VALUES (randomblob(1024));\n")
            .is_ok()
        {
            std::thread::sleep(interval);
        }
    });
    Ok((child, feeder))
}

fn rows(db: &Path) -> Result<i64> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?)
}

/// `sqlite3 DB ".backup FILE"`, given up after `timeout` (under writes it
/// may start over again and again). Seconds, or None when given up.
fn sqlite3_backup(db: &Path, out: &Path, timeout: Duration) -> Result<Option<f64>> {
    let start = Instant::now();
    let mut child = Command::new("sqlite3")
        .arg(db)
        .arg(format!(".backup '{}'", out.display()))
        .spawn()?;
    loop {
        if let Some(st) = child.try_wait()? {
            if !st.success() {
                bail!("sqlite3 .backup failed: {st}");
            }
            return Ok(Some(start.elapsed().as_secs_f64()));
        }
        if start.elapsed() > timeout {
            child.kill()?;
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn run(a: &Args) -> Result<()> {
    let t = tempfile::Builder::new()
        .prefix("nixarr-backup-bench-")
        .tempdir_in(&a.dir)?;
    let db = t.path().join("app.db");
    eprintln!(
        "creating a {} MiB database in {} …",
        a.size_mib,
        t.path().display()
    );
    let made = Instant::now();
    make_db(&db, a.size_mib)?;
    let size = std::fs::metadata(&db)?.len();
    eprintln!("  {size} bytes in {:.1}s", made.elapsed().as_secs_f64());
    let (mut writer, feeder) = start_writer(&db, a.write_interval)?;
    std::thread::sleep(Duration::from_secs(1));
    let (mut copy, mut check, mut hash, mut theirs) = (vec![], vec![], vec![], vec![]);
    let mut gave_up = 0;
    for i in 0..a.runs {
        let before = rows(&db)?;
        let ours = t.path().join(format!("ours-{i}.db"));
        let s = Instant::now();
        sqlite::copy_pages(&db, &ours, Duration::from_secs(30))?;
        copy.push(s.elapsed().as_secs_f64());
        let s = Instant::now();
        let ok = sqlite::check_file(&ours)?;
        check.push(s.elapsed().as_secs_f64());
        let s = Instant::now();
        nixarr_units::backup::sha256_file(&ours)?;
        hash.push(s.elapsed().as_secs_f64());
        anyhow::ensure!(ok == "ok", "integrity_check of our copy: {ok}");
        anyhow::ensure!(rows(&ours)? >= before, "our copy lacks committed rows");
        std::fs::remove_file(&ours)?;
        let out = t.path().join(format!("sqlite3-{i}.db"));
        let last = sqlite3_backup(&db, &out, a.sqlite3_timeout)?;
        match last {
            Some(s) => theirs.push(s),
            None => gave_up += 1,
        }
        std::fs::remove_file(&out).ok();
        eprintln!(
            "  run {}: copy {:.2}s, integrity_check {:.2}s, sha256 {:.2}s; sqlite3 .backup {}",
            i + 1,
            copy[i],
            check[i],
            hash[i],
            last.map_or("gave up".to_owned(), |s| format!("{s:.2}s"))
        );
    }
    let written = rows(&db)?;
    writer.kill().ok();
    writer.wait().ok();
    drop(feeder);
    // The same database with nothing writing: where sqlite3 .backup
    // finishes, for the ratio.
    let (mut quiet_ours, mut quiet_theirs) = (vec![], vec![]);
    for i in 0..a.runs {
        let ours = t.path().join(format!("quiet-ours-{i}.db"));
        let s = Instant::now();
        sqlite::copy_pages(&db, &ours, Duration::from_secs(30))?;
        quiet_ours.push(s.elapsed().as_secs_f64());
        std::fs::remove_file(&ours)?;
        let out = t.path().join(format!("quiet-sqlite3-{i}.db"));
        if let Some(s) = sqlite3_backup(&db, &out, a.sqlite3_timeout)? {
            quiet_theirs.push(s);
        }
        std::fs::remove_file(&out).ok();
        eprintln!(
            "  quiet run {}: copy {:.2}s; sqlite3 .backup {}",
            i + 1,
            quiet_ours[i],
            quiet_theirs
                .get(i)
                .map_or("gave up".to_owned(), |s| format!("{s:.2}s"))
        );
    }
    let (c, k, h) = (median(&mut copy), median(&mut check), median(&mut hash));
    println!(
        "backup of a {size}-byte WAL database under concurrent writes (one row every {} ms; \
         {written} rows at the end), median of {} runs:",
        a.write_interval.as_millis(),
        a.runs
    );
    println!("  nixarr-units copy (online backup API, one step)   {c:>8.2} s");
    println!("    + PRAGMA integrity_check of the copy             {k:>8.2} s");
    println!("    + sha256 of the copy (manifest)                  {h:>8.2} s");
    println!(
        "    = what `backup` spends on this database          {:>8.2} s",
        c + k + h
    );
    if theirs.is_empty() {
        println!(
            "  sqlite3 DB \".backup FILE\"                      gave up after {} s in every run",
            a.sqlite3_timeout.as_secs()
        );
    } else {
        let s = median(&mut theirs);
        println!(
            "  sqlite3 DB \".backup FILE\"                          {s:>8.2} s{}",
            if gave_up > 0 {
                format!(
                    " ({gave_up} run(s) given up after {} s)",
                    a.sqlite3_timeout.as_secs()
                )
            } else {
                String::new()
            }
        );
        println!(
            "  copy / sqlite3: {:.2}×   (target ≤ 1.1×: {}); with check and hash: {:.2}×",
            c / s,
            if c / s <= 1.1 { "PASS" } else { "MISS" },
            (c + k + h) / s
        );
    }
    if !quiet_theirs.is_empty() {
        let (q, s) = (median(&mut quiet_ours), median(&mut quiet_theirs));
        println!(
            "the same database with no writer, median of {} runs:",
            a.runs
        );
        println!("  nixarr-units copy                                  {q:>8.2} s");
        println!("  sqlite3 DB \".backup FILE\"                          {s:>8.2} s");
        println!(
            "  copy / sqlite3: {:.2}×   (target ≤ 1.1×: {})",
            q / s,
            if q / s <= 1.1 { "PASS" } else { "MISS" }
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match args() {
        Ok(None) => {
            println!(
                "backup benchmark: run `cargo bench --bench backup -- [--size-mib N] [--runs N]`"
            );
            ExitCode::SUCCESS
        }
        Ok(Some(a)) => match run(&a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
