//! Which digest a tag points to now, asked of its registry with skopeo
//! (`skopeo inspect --raw`: the manifest only, one request per image, the
//! digest is the sha256 of its bytes as the registry computes it), with the
//! engine's registry credentials: podman's own auth file, found by skopeo
//! exactly as podman finds it (the same library), or Docker's
//! `config.json`. Images are asked concurrently, a bounded number at a
//! time; one that cannot be resolved fails the whole run before anything
//! is changed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use sha2::{Digest as _, Sha256};

use crate::images::lock::Resolved;
use crate::spec::Backend;

/// How many images are asked at a time by default.
pub const DEFAULT_JOBS: usize = 8;

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct Registry {
    /// The skopeo binary.
    pub skopeo: String,
    /// The credentials file, when the engine keeps them elsewhere than
    /// skopeo looks by default (Docker's `config.json`).
    pub auth_file: Option<PathBuf>,
    /// Images asked at a time.
    pub jobs: usize,
    /// Seconds one request may take.
    pub timeout_secs: u64,
}

impl Registry {
    /// Registries as `backend` reaches them: Docker's `config.json`
    /// (`$DOCKER_CONFIG`, else `~/.docker`) when it exists; podman's auth
    /// file is skopeo's default.
    pub fn for_backend(backend: Backend) -> Self {
        let auth_file = match backend {
            Backend::Podman => None,
            Backend::Docker => docker_config().filter(|p| p.is_file()),
        };
        Registry {
            skopeo: "skopeo".to_owned(),
            auth_file,
            jobs: DEFAULT_JOBS,
            timeout_secs: 60,
        }
    }

    /// The `skopeo inspect --raw` command line for `image`.
    pub fn inspect_argv(&self, image: &str) -> Vec<String> {
        let mut a = vec![
            self.skopeo.clone(),
            format!("--command-timeout={}s", self.timeout_secs),
            "inspect".to_owned(),
            "--raw".to_owned(),
            "--retry-times=1".to_owned(),
        ];
        if let Some(f) = &self.auth_file {
            a.push(format!("--authfile={}", f.display()));
        }
        a.push(format!("docker://{image}"));
        a
    }

    /// The digest `image` (a tag reference) points to now.
    pub fn resolve(&self, image: &str) -> Result<Resolved> {
        let argv = self.inspect_argv(image);
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .output()
            .with_context(|| {
                format!(
                    "cannot run {}: install skopeo (Debian: apt-get install skopeo), which \
                     asks registries for the digests",
                    self.skopeo
                )
            })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let why = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .trim_start_matches("time=")
                .to_owned();
            bail!(
                "cannot resolve {image} in its registry: {why}; check that the registry is \
                 reachable and the tag exists (`skopeo inspect docker://{image}`), and for a \
                 private registry log in first (`nixarr-units login REGISTRY`)"
            );
        }
        Ok(Resolved {
            digest: digest_of(&out.stdout),
            platform: platform(),
            resolved: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        })
    }

    /// Resolve every image, `self.jobs` at a time; `on_done` is called as
    /// each finishes (for progress). The first failure (in `images`' order)
    /// is the error.
    pub fn resolve_all(
        &self,
        images: &[String],
        on_done: &(dyn Fn(&str, &Result<Resolved>) + Sync),
    ) -> Result<BTreeMap<String, Resolved>> {
        let queue = Mutex::new(images.iter().enumerate());
        let results: Mutex<Vec<Option<Result<Resolved>>>> =
            Mutex::new(images.iter().map(|_| None).collect());
        std::thread::scope(|s| {
            for _ in 0..self.jobs.clamp(1, images.len().max(1)) {
                s.spawn(|| {
                    loop {
                        let next = queue.lock().map(|mut q| q.next()).ok().flatten();
                        let Some((i, image)) = next else { break };
                        let r = self.resolve(image);
                        on_done(image, &r);
                        if let Ok(mut all) = results.lock() {
                            all[i] = Some(r);
                        }
                    }
                });
            }
        });
        let results = results
            .into_inner()
            .map_err(|_| anyhow::anyhow!("a resolver thread panicked"))?;
        let mut resolved = BTreeMap::new();
        for (image, r) in images.iter().zip(results) {
            let r = r.with_context(|| format!("{image} was not resolved"))??;
            resolved.insert(image.clone(), r);
        }
        Ok(resolved)
    }
}

/// Docker's client configuration file: `$DOCKER_CONFIG`, else `~/.docker`
/// (root's when `HOME` is unset, as in a system service).
fn docker_config() -> Option<PathBuf> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map_or_else(|| PathBuf::from("/root"), PathBuf::from)
                .join(".docker")
        });
    Some(dir.join("config.json"))
}

/// The digest of a manifest, as registries compute it.
pub fn digest_of(manifest: &[u8]) -> String {
    let hash = Sha256::digest(manifest);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// This machine's platform as OCI writes it (`linux/amd64`).
pub fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("linux/{arch}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_digest_is_the_sha256_of_the_manifest_bytes() {
        assert_eq!(
            digest_of(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn argv_asks_for_the_raw_manifest_with_the_engines_credentials() {
        let mut r = Registry::for_backend(Backend::Podman);
        r.skopeo = "/usr/bin/skopeo".to_owned();
        assert_eq!(
            r.inspect_argv("127.0.0.1:5000/app:v"),
            [
                "/usr/bin/skopeo",
                "--command-timeout=60s",
                "inspect",
                "--raw",
                "--retry-times=1",
                "docker://127.0.0.1:5000/app:v"
            ]
        );
        r.auth_file = Some(PathBuf::from("/root/.docker/config.json"));
        assert!(
            r.inspect_argv("x:1")
                .contains(&"--authfile=/root/.docker/config.json".to_owned())
        );
    }

    #[test]
    fn a_missing_skopeo_says_what_to_install() {
        let mut r = Registry::for_backend(Backend::Podman);
        r.skopeo = "/nonexistent/skopeo".to_owned();
        let e = format!(
            "{:#}",
            r.resolve_all(&["a:1".to_owned()], &|_, _| {}).unwrap_err()
        );
        assert!(e.contains("install skopeo"), "{e}");
    }
}
