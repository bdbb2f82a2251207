//! Nix formats behind one small module, so moving to another crate (such as
//! nix-compat once it can be had) is a one-file change.

use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// The NAR hash of a file system tree in Nix's notation: exactly what
/// `nix-hash --type sha256 --base32 PATH` prints (symlinks, executables,
/// empty files and UTF-8 names included). Streams; memory stays flat.
pub fn nar_hash(path: &Path) -> Result<String> {
    let mut encoder = nix_nar::Encoder::new(path)
        .with_context(|| format!("cannot read {} for its NAR hash", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut encoder, &mut hasher)
        .with_context(|| format!("hashing {}", path.display()))?;
    Ok(to_nix_base32(&hasher.finalize()))
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
