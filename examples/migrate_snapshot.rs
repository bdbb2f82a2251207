//! The snapshot step of `nixarr-migrate` on its own, for
//! benches/migrate-bench.sh: inventory SRC, copy it faithfully to DST
//! (reflink where the file system can; owners, modes, mtimes kept) while
//! computing its NAR hash, and print the hash as `nix-hash --type sha256
//! --base32 SRC` does. The same functions `migrate` calls.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use nixarr_units::migrate::tree;

fn main() -> Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [src, dst] = args.as_slice() else {
        bail!("usage: migrate_snapshot SRC DST (DST must not exist)");
    };
    if dst.exists() {
        bail!("{} exists; give a new path", dst.display());
    }
    let entries = tree::inventory(src).with_context(|| format!("reading {}", src.display()))?;
    let hash = tree::snapshot_hashed(src, dst, &entries, &mut |_| {})?;
    println!("{hash}");
    Ok(())
}
