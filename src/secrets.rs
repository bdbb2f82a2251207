//! The secret bridge: `nixarr-units secrets install|remove --stack P SVC`,
//! run by `<prefix>-<svc>-secrets.service` before the container starts.
//!
//! It reads the manifest (paths only), checks every source — exists,
//! resolves to a regular, non-empty file below a size limit — and only when
//! all are good delivers them: atomic 0400 copies for `file`, one 0400 env
//! file for `envFile`, podman secrets for `podmanSecret`. Errors and logs
//! name the secret and its source, never its value.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::commands::Context as Cmd;
use crate::engine::Engine;
use crate::manifest::Secret;
use crate::manifest::ServiceManifest;
use crate::model::{ENV_DIR, SECRET_MAX_BYTES, SECRETS_DIR};
use crate::output::write_atomic;
use crate::render::podman_secret_name;
use crate::spec::SecretMode;

/// Where the bridge writes (the constants in production; temporary
/// directories in tests).
pub struct Dirs {
    pub secrets: PathBuf,
    pub env: PathBuf,
}

impl Default for Dirs {
    fn default() -> Self {
        Dirs {
            secrets: PathBuf::from(SECRETS_DIR),
            env: PathBuf::from(ENV_DIR),
        }
    }
}

/// Read one secret's source after checking it; the error says which secret
/// and what to do, never what it holds.
pub fn read_source(s: &Secret) -> Result<Vec<u8>> {
    let what = format!("secret {} (source {})", s.name, s.source);
    let meta = match std::fs::metadata(&s.source) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{what} does not exist; check that sops-nix (or agenix …) has decrypted it: \
             ls -lL {}",
            s.source
        ),
        Err(e) => bail!("{what} cannot be read: {e}"),
    };
    let kind = meta.file_type();
    if !kind.is_file() {
        let it = if kind.is_dir() {
            "a directory"
        } else {
            "not a regular file (a device, socket or pipe)"
        };
        bail!("{what} is {it}; point it at the file holding the value");
    }
    if meta.len() == 0 {
        bail!("{what} is empty; put the value in it");
    }
    if meta.len() > SECRET_MAX_BYTES {
        bail!(
            "{what} is {} bytes, more than the {} bytes a secret may have",
            meta.len(),
            SECRET_MAX_BYTES
        );
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o044 != 0 {
        tracing::warn!(
            "{what} is readable by group or others (mode {mode:04o}); restrict it to 0400"
        );
    }
    let mut file = fs_err::File::open(&s.source).with_context(|| format!("{what}: open"))?;
    // Re-check on the opened file: it may have been swapped meanwhile.
    let opened = file.metadata()?;
    if !opened.is_file() || opened.len() > SECRET_MAX_BYTES {
        bail!("{what} changed while being read; start the unit again");
    }
    let mut value = Vec::with_capacity(opened.len() as usize);
    Read::by_ref(&mut file)
        .take(SECRET_MAX_BYTES + 1)
        .read_to_end(&mut value)
        .with_context(|| format!("{what}: read"))?;
    if value.is_empty() || value.len() as u64 > SECRET_MAX_BYTES {
        bail!("{what} is empty or too large");
    }
    Ok(value)
}

/// A value for an env file: one line; a single trailing newline (as editors
/// and sops leave) is dropped.
fn env_value(s: &Secret, mut value: Vec<u8>) -> Result<Vec<u8>> {
    if value.last() == Some(&b'\n') {
        value.pop();
        if value.last() == Some(&b'\r') {
            value.pop();
        }
    }
    if value.iter().any(|b| matches!(b, b'\n' | b'\r' | 0)) {
        bail!(
            "secret {} (source {}) holds a line break or NUL, which an env file cannot carry; \
             use \"mode\": \"file\" for multi-line values",
            s.name,
            s.source
        );
    }
    Ok(value)
}

fn private_dir(dir: &Path) -> Result<()> {
    fs_err::create_dir_all(dir)?;
    fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Deliver every secret of `svc`. Nothing is placed unless all sources are
/// good.
pub fn install(svc: &ServiceManifest, engine: &Engine, dirs: &Dirs) -> Result<()> {
    if let Some(s) = svc.secrets.iter().find(|s| s.mode == SecretMode::Env) {
        bail!(
            "secret {} has the unresolved mode `env` in the manifest; render the spec again \
             with this nixarr-units",
            s.name
        );
    }
    let values = svc
        .secrets
        .iter()
        .map(|s| {
            let value = read_source(s)?;
            let value = match s.mode {
                SecretMode::EnvFile => env_value(s, value)?,
                _ => value,
            };
            Ok((s, value))
        })
        .collect::<Result<Vec<_>>>()?;

    let mut env_file = Vec::new();
    let mut placed = Vec::new();
    for (s, value) in values {
        match s.mode {
            SecretMode::File => {
                let dir = dirs.secrets.join(&svc.container);
                private_dir(&dir)?;
                write_atomic(&dir.join(&s.name), &value, 0o400)
                    .with_context(|| format!("placing secret {}", s.name))?;
            }
            SecretMode::EnvFile | SecretMode::Env => {
                env_file.extend_from_slice(s.name.as_bytes());
                env_file.push(b'=');
                env_file.extend(value);
                env_file.push(b'\n');
            }
            SecretMode::PodmanSecret => podman_secret(engine, svc, s, &value)?,
        }
        placed.push(format!(
            "{} ({})",
            s.name,
            match s.mode {
                SecretMode::File => "file",
                SecretMode::EnvFile | SecretMode::Env => "env file",
                SecretMode::PodmanSecret => "podman secret",
            }
        ));
    }
    if !env_file.is_empty() {
        let dir = dirs.env.join(&svc.container);
        private_dir(&dir)?;
        write_atomic(&dir.join("env"), &env_file, 0o400).context("writing the env file")?;
    }
    // Copies of secrets the spec no longer has must not linger.
    let dir = dirs.secrets.join(&svc.container);
    if let Ok(entries) = fs_err::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let current = svc
                .secrets
                .iter()
                .any(|s| s.mode == SecretMode::File && s.name == name);
            if !current {
                let _ = fs_err::remove_file(e.path());
            }
        }
    }
    tracing::info!(
        "delivered {} secret(s) to {}: {}",
        placed.len(),
        svc.container,
        placed.join(", ")
    );
    Ok(())
}

/// `podman secret rm NAME`, quietly: a missing secret is fine.
fn podman_secret_rm(engine: &Engine, name: &str) {
    engine.secret_rm(name).succeeds();
}

fn podman_secret(engine: &Engine, svc: &ServiceManifest, s: &Secret, value: &[u8]) -> Result<()> {
    let name = podman_secret_name(&svc.container, &s.name);
    // `secret create --replace` is podman ≥ 4.7; remove-then-create works
    // everywhere. The value goes through a pipe, never through argv.
    podman_secret_rm(engine, &name);
    let create = engine.secret_create(&name, value);
    let out = create
        .output()
        .with_context(|| format!("placing secret {}", s.name))?;
    if !out.status.success() {
        bail!("secret {}: {}", s.name, create.failure(&out));
    }
    Ok(())
}

/// Remove every copy of `svc`'s secrets (systemd also removes the runtime
/// directories when the bridge stops). Every copy is tried even when one
/// fails; the error lists what is left.
pub fn remove(svc: &ServiceManifest, engine: &Engine, dirs: &Dirs) -> Result<()> {
    let mut left = Vec::new();
    for dir in [
        dirs.secrets.join(&svc.container),
        dirs.env.join(&svc.container),
    ] {
        if let Err(e) = empty_and_remove(&dir) {
            left.push(format!("{}: {e}", dir.display()));
        }
    }
    for s in svc
        .secrets
        .iter()
        .filter(|s| s.mode == SecretMode::PodmanSecret)
    {
        podman_secret_rm(engine, &podman_secret_name(&svc.container, &s.name));
    }
    if !left.is_empty() {
        bail!(
            "could not remove every copy of the secrets of {}: {}",
            svc.container,
            left.join("; ")
        );
    }
    tracing::info!("removed the secrets of {}", svc.container);
    Ok(())
}

/// Remove `dir` with its contents. Under the bridge's `ProtectSystem=strict`
/// the directory is systemd's `RuntimeDirectory=`, bind-mounted writable into
/// the bridge's namespace: a mount point there, so removing it fails with
/// EBUSY. Then it is left empty, and systemd removes it after the stop.
fn empty_and_remove(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries {
        let path = e?.path();
        if std::fs::symlink_metadata(&path)?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy => Ok(()),
        other => other,
    }
}

/// The CLI entry: find the service in the manifest and install or remove.
pub fn run(ctx: &Cmd, stack: &str, service: &str, install_: bool) -> Result<()> {
    let (path, manifest) = ctx.load_manifest_for(stack)?;
    let st = manifest.stack(&path, stack)?;
    let svc = st.services.get(service).with_context(|| {
        format!(
            "{}: stack `{stack}` has no service `{service}`",
            path.display()
        )
    })?;
    let dirs = Dirs::default();
    if install_ {
        install(svc, &Engine::from(st), &dirs)
    } else {
        remove(svc, &Engine::from(st), &dirs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn secret(name: &str, source: &Path, mode: SecretMode) -> Secret {
        Secret {
            name: name.into(),
            source: source.display().to_string(),
            mode,
            path_env: None,
            podman_secret_type: None,
        }
    }

    fn service(secrets: Vec<Secret>) -> ServiceManifest {
        let m = serde_json::json!({
            "unit": "nixarr-app.service", "container": "nixarr-app", "app": null,
            "description": "", "image": "x", "ports": [], "volumes": [], "configDir": null,
            "dependsOn": [], "vpn": false, "health": null, "configHash": "h",
            "uid": 0, "gid": 0, "migration": null
        });
        let mut s: ServiceManifest = serde_json::from_value(m).unwrap();
        s.secrets = secrets;
        s
    }

    #[test]
    fn delivers_files_and_env_and_removes_them() {
        let t = tempfile::tempdir().unwrap();
        let key = t.path().join("key");
        std::fs::write(&key, b"s3cr3t value\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        let dirs = Dirs {
            secrets: t.path().join("secrets"),
            env: t.path().join("env"),
        };
        let svc = service(vec![
            secret("API_KEY", &key, SecretMode::File),
            secret("TOKEN", &key, SecretMode::EnvFile),
        ]);
        install(&svc, &Engine::from_path("/bin/false"), &dirs).unwrap();
        let copy = dirs.secrets.join("nixarr-app/API_KEY");
        assert_eq!(std::fs::read(&copy).unwrap(), b"s3cr3t value\n");
        assert_eq!(
            std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
            0o400
        );
        let env = std::fs::read_to_string(dirs.env.join("nixarr-app/env")).unwrap();
        assert_eq!(env, "TOKEN=s3cr3t value\n");
        remove(&svc, &Engine::from_path("/bin/false"), &dirs).unwrap();
        assert!(!dirs.secrets.join("nixarr-app").exists());
        assert!(!dirs.env.join("nixarr-app").exists());
    }

    #[test]
    fn refuses_bad_sources_without_placing_anything() {
        let t = tempfile::tempdir().unwrap();
        let good = t.path().join("good");
        std::fs::write(&good, b"v").unwrap();
        let empty = t.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let to_dir = t.path().join("to-dir");
        symlink(t.path(), &to_dir).unwrap();
        let to_zero = t.path().join("to-zero");
        symlink("/dev/zero", &to_zero).unwrap();
        let dirs = Dirs {
            secrets: t.path().join("secrets"),
            env: t.path().join("env"),
        };
        for (bad, needle) in [
            (t.path().join("missing"), "does not exist"),
            (empty, "is empty"),
            (to_dir, "is a directory"),
            (to_zero, "not a regular file"),
        ] {
            let svc = service(vec![
                secret("A", &good, SecretMode::File),
                secret("B", &bad, SecretMode::File),
            ]);
            let err = format!(
                "{:#}",
                install(&svc, &Engine::from_path("/bin/false"), &dirs).unwrap_err()
            );
            assert!(err.contains("secret B"), "{err}");
            assert!(err.contains(needle), "{err}");
            assert!(
                !dirs.secrets.join("nixarr-app/A").exists(),
                "placed despite {needle}"
            );
        }
    }

    #[test]
    fn env_file_refuses_multi_line_values_without_echoing_them() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("multi");
        std::fs::write(&src, b"line-one\nline-two\n").unwrap();
        let dirs = Dirs {
            secrets: t.path().join("secrets"),
            env: t.path().join("env"),
        };
        let svc = service(vec![secret("T", &src, SecretMode::EnvFile)]);
        let err = format!(
            "{:#}",
            install(&svc, &Engine::from_path("/bin/false"), &dirs).unwrap_err()
        );
        assert!(err.contains("line break"), "{err}");
        assert!(!err.contains("line-one"), "{err}");
    }
}
