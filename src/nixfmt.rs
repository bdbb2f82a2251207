//! Nix formats behind one small module, so moving to another crate (such as
//! nix-compat once it can be had) is a one-file change.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// The NAR hash of a file system tree in Nix's notation: exactly what
/// `nix-hash --type sha256 --base32 PATH` prints (symlinks, executables,
/// empty files, any file name bytes). Streams; memory stays flat.
pub fn nar_hash(path: &Path) -> Result<String> {
    let mut nar = NarHasher::new();
    let mut buf = vec![0u8; READ_CHUNK];
    hash_node(&mut nar, path, None, &mut buf)?;
    Ok(nar.finish())
}

/// Read size for file contents: large enough that syscalls do not count.
pub const READ_CHUNK: usize = 1 << 20;

fn hash_node(nar: &mut NarHasher, path: &Path, name: Option<&[u8]>, buf: &mut [u8]) -> Result<()> {
    let meta = fs_err::symlink_metadata(path)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs_err::read_link(path)?;
        nar.symlink(name, target.as_os_str().as_bytes());
    } else if ft.is_dir() {
        nar.directory(name);
        let mut children: Vec<std::ffi::OsString> = fs_err::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        // Nix sorts entries by their bytes.
        children.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for c in children {
            hash_node(nar, &path.join(&c), Some(c.as_bytes()), buf)?;
        }
        nar.end_directory(name.is_some());
    } else if ft.is_file() {
        let mut f = fs_err::File::open(path)?;
        let size = meta.len();
        nar.file(name, is_executable(meta.permissions().mode()), size);
        let mut total = 0u64;
        loop {
            let n = f
                .read(buf)
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            nar.contents(&buf[..n]);
        }
        if total != size {
            bail!(
                "{} changed while it was hashed ({size} bytes, then {total}); stop what writes \
                 to it and try again",
                path.display()
            );
        }
        nar.end_file(name.is_some(), size);
    } else {
        bail!(
            "{} is a device, socket or pipe, which a NAR cannot hold",
            path.display()
        );
    }
    Ok(())
}

/// Whether Nix records a file as executable: its owner may execute it
/// (`st_mode & S_IXUSR`, as nix-hash decides; group or other bits alone do
/// not count).
pub fn is_executable(mode: u32) -> bool {
    mode & 0o100 != 0
}

/// The SHA-256 of a NAR serialisation, fed node by node in NAR order
/// (directory entries sorted by name bytes, parents before children), so a
/// tree can be hashed while it is copied, one read per file.
pub struct NarHasher {
    h: Sha256,
}

impl Default for NarHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl NarHasher {
    pub fn new() -> Self {
        let mut n = NarHasher { h: Sha256::new() };
        n.str(b"nix-archive-1");
        n
    }
    fn str(&mut self, b: &[u8]) {
        self.h.update((b.len() as u64).to_le_bytes());
        self.h.update(b);
        self.pad(b.len() as u64);
    }
    fn pad(&mut self, len: u64) {
        let p = ((8 - len % 8) % 8) as usize;
        self.h.update(&[0u8; 8][..p]);
    }
    /// Open a node: the root (`name` None) or a directory entry.
    fn node(&mut self, name: Option<&[u8]>) {
        if let Some(n) = name {
            self.str(b"entry");
            self.str(b"(");
            self.str(b"name");
            self.str(n);
            self.str(b"node");
        }
        self.str(b"(");
    }
    fn end_node(&mut self, named: bool) {
        self.str(b")");
        if named {
            self.str(b")");
        }
    }
    /// A directory; its entries follow, then [`Self::end_directory`].
    pub fn directory(&mut self, name: Option<&[u8]>) {
        self.node(name);
        self.str(b"type");
        self.str(b"directory");
    }
    pub fn end_directory(&mut self, named: bool) {
        self.end_node(named);
    }
    pub fn symlink(&mut self, name: Option<&[u8]>, target: &[u8]) {
        self.node(name);
        self.str(b"type");
        self.str(b"symlink");
        self.str(b"target");
        self.str(target);
        self.end_node(name.is_some());
    }
    /// A regular file of `size` bytes: its contents follow through
    /// [`Self::contents`], then [`Self::end_file`].
    pub fn file(&mut self, name: Option<&[u8]>, executable: bool, size: u64) {
        self.node(name);
        self.str(b"type");
        self.str(b"regular");
        if executable {
            self.str(b"executable");
            self.str(b"");
        }
        self.str(b"contents");
        self.h.update(size.to_le_bytes());
    }
    pub fn contents(&mut self, chunk: &[u8]) {
        self.h.update(chunk);
    }
    pub fn end_file(&mut self, named: bool, size: u64) {
        self.pad(size);
        self.end_node(named);
    }
    /// The hash in Nix's base32, as `nix-hash --type sha256 --base32`.
    pub fn finish(self) -> String {
        to_nix_base32(&self.h.finalize())
    }
}

/// Nix's base32 alphabet and bit order, as in store paths and
/// `nix-hash --base32`.
pub fn to_nix_base32(bytes: &[u8]) -> String {
    nix_base32::to_nix_base32(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compared with Debian's nix-bin when it is installed.
    #[test]
    fn nar_hash_matches_nix_hash() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("tree");
        std::fs::create_dir_all(root.join("sub/dir")).unwrap();
        std::fs::write(root.join("a.txt"), b"hello\n").unwrap();
        std::fs::write(root.join("empty"), b"").unwrap();
        std::fs::write(root.join("sub/run.sh"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            root.join("sub/run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(root.join("sub/dir/ünïcødé ☃"), vec![7u8; 100_000]).unwrap();
        symlink("../a.txt", root.join("sub/link")).unwrap();
        symlink("/nowhere/at all", root.join("dangling")).unwrap();
        // Group and other may execute, the owner not: Nix says not executable.
        std::fs::write(root.join("odd-mode"), b"x").unwrap();
        std::fs::set_permissions(
            root.join("odd-mode"),
            std::fs::Permissions::from_mode(0o611),
        )
        .unwrap();
        // Owner-executable only.
        std::fs::write(root.join("owner-x"), b"y").unwrap();
        std::fs::set_permissions(root.join("owner-x"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        // A name that is not UTF-8, and names that sort differently by
        // bytes than by characters.
        use std::os::unix::ffi::OsStrExt;
        std::fs::write(
            root.join(std::ffi::OsStr::from_bytes(b"latin1-\xe9t\xe9")),
            b"1",
        )
        .unwrap();
        std::fs::write(root.join("Zebra"), b"2").unwrap();
        std::fs::write(root.join("apple"), b"3").unwrap();
        std::fs::write(root.join("-dash"), vec![9u8; 8]).unwrap();
        let ours = nar_hash(&root).unwrap();
        assert_eq!(ours.len(), 52);
        let Ok(out) = std::process::Command::new("nix-hash")
            .args(["--type", "sha256", "--base32"])
            .arg(&root)
            .output()
        else {
            eprintln!(
                "SKIPPED the comparison: nix-hash is not installed (apt-get install nix-bin)"
            );
            return;
        };
        assert_eq!(ours, String::from_utf8_lossy(&out.stdout).trim());
    }

    #[test]
    fn matches_nix_for_known_values() {
        // `nix-hash --type sha256 --to-base32` of the sha256 of "" (hex
        // e3b0c442…b855) is 0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73.
        let empty = [
            0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f,
            0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b,
            0x78, 0x52, 0xb8, 0x55,
        ];
        assert_eq!(
            to_nix_base32(&empty),
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
        );
    }
}
