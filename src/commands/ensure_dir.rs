//! `nixarr-units ensure-dir` (the units' ExecStartPre=): create missing
//! host directories for a container.

use std::path::PathBuf;

use anyhow::Result;

use super::{Context, ExitStatus, UsageError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Owner as UID:GID.
    #[arg(long)]
    owner: String,
    /// Octal mode.
    #[arg(long, default_value = "0750")]
    mode: String,
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

impl Args {
    pub fn run(self, _: &Context) -> Result<ExitStatus> {
        let (uid, gid) = parse_owner(&self.owner)?;
        let mode = u32::from_str_radix(&self.mode, 8)
            .map_err(|_| UsageError(format!("--mode {}: not an octal mode", self.mode)))?;
        crate::health::ensure_dirs(&self.paths, uid, gid, mode)?;
        Ok(ExitStatus::Success)
    }
}

/// `UID:GID` as two numbers.
fn parse_owner(owner: &str) -> Result<(u32, u32), UsageError> {
    owner
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
        .ok_or_else(|| UsageError(format!("--owner {owner}: write it as UID:GID")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_two_numbers() {
        assert_eq!(parse_owner("1000:100"), Ok((1000, 100)));
        for bad in ["1000", "a:b", "1000:", ":100"] {
            let e = parse_owner(bad).expect_err(bad);
            assert!(e.0.contains("UID:GID"), "{e}");
        }
    }
}
