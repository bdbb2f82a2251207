//! The NixOS end-to-end mode: a machine configured from the *evaluated*
//! NixOS configuration of a scenario (tests/nix/e2e/<name>.nix), not from a
//! hand-written spec. [`evaluate`] runs tests/nix/export.nix (nixpkgs' lib,
//! the stubs of tests/nix/stubs.nix, the module) and [`Generation::build`]
//! builds what NixOS would: the units derivation's own script, run with this
//! tree's binary. [`Generation::switch`] installs it the way NixOS does and
//! activates it the way `switch-to-configuration` does:
//!
//! - each `systemd.packages` output copied to a store path in the machine,
//!   `/nix/store/<hash of its content>-<name>`, and linked unit by unit into
//!   /etc/systemd/system, ignoring the packages' `*.wants/` directories
//!   (NixOS's generateUnits does both); `systemd.targets.<t>.wantedBy` as
//!   `<w>.wants/<t>.target` links;
//! - `environment.etc` files linked from /etc (directly, not through
//!   /etc/static);
//! - `users.groups`/`users.users` created with groupadd/useradd and their ids;
//! - `systemd.tmpfiles.rules` written to /etc/tmpfiles.d/00-nixos.conf and
//!   applied with the real `systemd-tmpfiles --create --remove`;
//! - the firewall ([`super::nixos_fw`], which says what it leaves out);
//! - daemon-reload; units whose file changed and that run are restarted,
//!   units that are gone are stopped, and the active targets are started
//!   (which starts new units they want), as switch-to-configuration does.
//!
//! The package and engine paths the units call are the stubs' store paths;
//! in the machine they are links to this tree's binary and to the engine in
//! /usr, and the engine's version is the machine's (so the module renders
//! for the engine that really runs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;
use sha2::Digest as _;

use super::nixos_fw::{self, Firewall};
use super::{BIN, IMAGE, MACHINE_BIN_DIR, Machine, host};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[derive(Debug, Clone, Deserialize)]
pub struct Drv {
    pub name: String,
    pub path: String,
    pub script: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PathOf {
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Package {
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub wanted_by: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EtcFile {
    pub source: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Group {
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Users {
    pub users: BTreeMap<String, serde_json::Value>,
    pub groups: BTreeMap<String, Group>,
}

/// What tests/nix/export.nix prints.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Export {
    pub files: BTreeMap<String, String>,
    pub package: Package,
    pub engine: PathOf,
    pub systemd_packages: Vec<Drv>,
    pub targets: BTreeMap<String, Target>,
    pub etc: BTreeMap<String, EtcFile>,
    pub tmpfiles: Vec<String>,
    pub users: Users,
    pub firewall: Firewall,
}

/// nixpkgs' lib (`NIXPKGS_LIB`, set by tests/run.sh), or why the mode
/// cannot run here.
pub fn nixpkgs_lib() -> Result<PathBuf, String> {
    let ok = Command::new("nix-instantiate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        return Err("nix-instantiate is not installed (apt-get install nix-bin)".to_owned());
    }
    match std::env::var_os("NIXPKGS_LIB") {
        Some(p) if Path::new(&p).join("default.nix").is_file() => Ok(PathBuf::from(p)),
        Some(p) => Err(format!(
            "NIXPKGS_LIB={} has no default.nix (point it at nixpkgs' lib/)",
            Path::new(&p).display()
        )),
        None => Err("NIXPKGS_LIB is unset (tests/run.sh sets it to nixpkgs' lib/)".to_owned()),
    }
}

/// The engine's version in the machine (`podman --version`, `docker
/// version`), as a NixOS package of that engine would carry it.
pub fn engine_version(m: &Machine) -> Result<String> {
    let out = m.engine(&["--version"])?;
    // "podman version 4.3.1", "Docker version 28.2.2, build e6534b4"
    out.split_whitespace()
        .nth(2)
        .map(|v| v.trim_end_matches(',').to_owned())
        .with_context(|| format!("no version in {out:?}"))
}

/// Evaluate scenario `scenario` (tests/nix/e2e/<scenario>.nix) in `variant`
/// for this machine and prefix; `extra`: more arguments of
/// tests/nix/export.nix (`imageFile`).
pub fn evaluate(
    m: &Machine,
    scenario: &str,
    prefix: &str,
    variant: &str,
    extra: &[(&str, &str)],
) -> Result<Export> {
    let lib = nixpkgs_lib().map_err(anyhow::Error::msg)?;
    let version = engine_version(m)?;
    let mut cmd = Command::new("nix-instantiate");
    for (k, v) in extra {
        cmd.args(["--argstr", k, v]);
    }
    let out = host(
        cmd.current_dir(ROOT)
            .args(["--eval", "--strict", "--json", "tests/nix/export.nix"])
            .arg("--arg")
            .arg("nixpkgsLib")
            .arg(&lib)
            .args(["--argstr", "scenario", scenario])
            .args(["--argstr", "prefix", prefix])
            .args(["--argstr", "backend", m.backend.name()])
            .args(["--argstr", "engineVersion", &version])
            .args(["--argstr", "image", IMAGE])
            .args(["--argstr", "variant", variant]),
    )
    .with_context(|| format!("evaluating tests/nix/e2e/{scenario}.nix ({variant})"))?;
    serde_json::from_str(&out).context("tests/nix/export.nix printed something else than JSON")
}

/// One built system: each store path of the export, built on the host.
pub struct Generation {
    pub export: Export,
    /// The stubs' store path of each package → its path in the machine.
    pub store: BTreeMap<String, String>,
    /// Built trees on the host, by machine store path.
    built: BTreeMap<String, PathBuf>,
    /// Unit files (and drop-ins) as installed under /etc/systemd/system:
    /// relative path → content.
    pub units: BTreeMap<String, Vec<u8>>,
}

fn walk(dir: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) -> Result<()> {
    for e in fs_err::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        let r = rel.join(e.file_name());
        if e.file_type()?.is_dir() {
            walk(&p, &r, out)?;
        } else {
            out.insert(r, fs_err::read(&p)?);
        }
    }
    Ok(())
}

impl Generation {
    /// Build every `systemd.packages` output with its own script, as the
    /// derivation would: `out` set, the binary on PATH (nativeBuildInputs),
    /// the files it reads at their store paths (here: host files).
    pub fn build(export: Export, dir: &Path) -> Result<Generation> {
        let bin_dir = Path::new(BIN)
            .parent()
            .context("binary without directory")?;
        let files = dir.join("files");
        fs_err::create_dir_all(&files)?;
        let mut store = BTreeMap::new();
        let mut built = BTreeMap::new();
        let mut units = BTreeMap::new();
        for (i, d) in export.systemd_packages.iter().enumerate() {
            let mut script = d
                .script
                .clone()
                .with_context(|| format!("systemd package {} has no build script", d.name))?;
            for (path, text) in &export.files {
                let name = Path::new(path).file_name().context("file without name")?;
                let local = files.join(name);
                fs_err::write(&local, text)?;
                script = script.replace(path.as_str(), &local.to_string_lossy());
            }
            // Only the package's own path (baked into the units) may remain.
            let rest = script.replace(&export.package.path, "");
            ensure!(
                !rest.contains("/nix/store/"),
                "the build script of {} reads a store path the export does not give \
                 (add it to `files` in tests/nix/export.nix):\n{script}",
                d.name
            );
            let out = dir.join(format!("build-{i}"));
            if out.exists() {
                fs_err::remove_dir_all(&out)?;
            }
            let path_var = format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            );
            host(
                Command::new("bash")
                    .args(["-euo", "pipefail", "-c", &script])
                    .env("out", &out)
                    .env("PATH", path_var),
            )
            .with_context(|| format!("building {}", d.name))?;
            let mut tree = BTreeMap::new();
            walk(&out, Path::new(""), &mut tree)?;
            let mut h = sha2::Sha256::new();
            for (p, bytes) in &tree {
                h.update(p.to_string_lossy().as_bytes());
                h.update([0]);
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(bytes);
            }
            let hash: String = h
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()[..32]
                .to_owned();
            let machine_path = format!("/nix/store/{hash}-{}", d.name);
            // What generateUnits links: etc/ and lib/systemd/system, minus
            // the `*.wants` directories.
            for unit_dir in ["etc/systemd/system", "lib/systemd/system"] {
                for (p, bytes) in &tree {
                    let Ok(rel) = p.strip_prefix(unit_dir) else {
                        continue;
                    };
                    let first = rel
                        .components()
                        .next()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if first.ends_with(".wants") {
                        continue;
                    }
                    units.insert(rel.to_string_lossy().into_owned(), bytes.clone());
                }
            }
            store.insert(d.path.clone(), machine_path.clone());
            built.insert(machine_path, out);
        }
        Ok(Generation {
            export,
            store,
            built,
            units,
        })
    }

    /// A path of the stubs' store mapped to the machine's.
    fn map_store(&self, p: &str) -> Result<String> {
        for (from, to) in &self.store {
            if let Some(rest) = p.strip_prefix(from.as_str()) {
                return Ok(format!("{to}{rest}"));
            }
        }
        bail!("{p} is not in a package of this generation")
    }

    /// Install this generation on `m` in place of `old` (None: the first
    /// one) and activate it; returns the units restarted.
    pub fn switch(&self, m: &Machine, old: Option<&Generation>) -> Result<Vec<String>> {
        let root = m.root();
        let sys = root.join("etc/systemd/system");
        // Links to this tree's binary and the engine, at the stubs' paths.
        let pkg = root.join(self.export.package.path.trim_start_matches('/'));
        if !pkg.exists() {
            fs_err::create_dir_all(&pkg)?;
            fs_err::os::unix::fs::symlink(MACHINE_BIN_DIR, pkg.join("bin"))?;
        }
        let engine = root.join(self.export.engine.path.trim_start_matches('/'));
        if engine.symlink_metadata().is_err() {
            fs_err::create_dir_all(engine.parent().context("engine path")?)?;
            fs_err::os::unix::fs::symlink("/usr", &engine)?;
        }
        for (machine_path, tree) in &self.built {
            let dest = root.join(machine_path.trim_start_matches('/'));
            if !dest.exists() {
                fs_err::create_dir_all(dest.parent().context("store path")?)?;
                host(Command::new("cp").arg("-a").arg(tree).arg(&dest))?;
            }
        }

        // Users and groups first (tmpfiles and units name them).
        self.users(m)?;

        // Units that are gone are stopped before their files go.
        let gone: Vec<String> = old
            .map(|o| {
                o.units
                    .keys()
                    .filter(|u| !self.units.contains_key(*u) && !u.contains('/'))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if !gone.is_empty() {
            let mut argv = vec!["systemctl", "stop"];
            argv.extend(gone.iter().map(String::as_str));
            m.ok(&argv)?;
        }
        if let Some(o) = old {
            o.unlink(m)?;
        }
        for (machine_path, tree) in &self.built {
            for unit_dir in ["etc/systemd/system", "lib/systemd/system"] {
                let src = tree.join(unit_dir);
                if !src.is_dir() {
                    continue;
                }
                for e in fs_err::read_dir(&src)? {
                    let e = e?;
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.ends_with(".wants") {
                        continue;
                    }
                    let target = Path::new(machine_path).join(unit_dir).join(&name);
                    if e.file_type()?.is_dir() {
                        fs_err::create_dir_all(sys.join(&name))?;
                        for f in fs_err::read_dir(e.path())? {
                            let f = f?;
                            link(
                                &target.join(f.file_name()),
                                &sys.join(&name).join(f.file_name()),
                            )?;
                        }
                    } else {
                        link(&target, &sys.join(&name))?;
                    }
                }
            }
        }
        for (t, def) in &self.export.targets {
            for w in &def.wanted_by {
                let wants = sys.join(format!("{w}.wants"));
                fs_err::create_dir_all(&wants)?;
                link(
                    Path::new(&format!("../{t}.target")),
                    &wants.join(format!("{t}.target")),
                )?;
            }
        }
        for (name, f) in &self.export.etc {
            let dest = root.join("etc").join(name);
            fs_err::create_dir_all(dest.parent().context("etc path")?)?;
            link(Path::new(&self.map_store(&f.source)?), &dest)?;
        }

        // Activation: tmpfiles, then the firewall, then systemd.
        let tmpfiles = root.join("etc/tmpfiles.d/00-nixos.conf");
        fs_err::create_dir_all(tmpfiles.parent().context("tmpfiles.d")?)?;
        let mut rules = self.export.tmpfiles.join("\n");
        rules.push('\n');
        fs_err::write(&tmpfiles, rules)?;
        m.ok(&[
            "systemd-tmpfiles",
            "--create",
            "--remove",
            "/etc/tmpfiles.d/00-nixos.conf",
        ])
        .context("systemd-tmpfiles rejected the module's rules")?;
        self.firewall(m)?;
        m.daemon_reload()?;

        // switch-to-configuration: restart the running units whose file
        // changed, then start the active targets (and so the new units
        // they want).
        let mut restarted = Vec::new();
        if let Some(o) = old {
            for (u, bytes) in &self.units {
                let changed = o.units.get(u).is_some_and(|b| b != bytes);
                if !changed || u.contains('/') || u.ends_with(".target") {
                    continue;
                }
                let active = m
                    .exec(&["systemctl", "is-active", "--quiet", u])?
                    .status
                    .success();
                if active {
                    restarted.push(u.clone());
                }
            }
            if !restarted.is_empty() {
                let mut argv = vec!["systemctl", "restart"];
                argv.extend(restarted.iter().map(String::as_str));
                m.ok(&argv)?;
            }
        }
        let mut targets: Vec<String> = self
            .export
            .targets
            .values()
            .flat_map(|t| t.wanted_by.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        targets.retain(|t| {
            m.exec(&["systemctl", "is-active", "--quiet", t])
                .is_ok_and(|o| o.status.success())
        });
        if !targets.is_empty() {
            let mut argv = vec!["systemctl", "start"];
            argv.extend(targets.iter().map(String::as_str));
            m.ok(&argv)?;
        }
        Ok(restarted)
    }

    /// Remove this generation's links (before the next one's go in, or at
    /// the end of a scenario).
    pub fn unlink(&self, m: &Machine) -> Result<()> {
        let root = m.root();
        let sys = root.join("etc/systemd/system");
        for u in self.units.keys() {
            let p = sys.join(u);
            if p.symlink_metadata().is_ok() {
                fs_err::remove_file(&p)?;
            }
        }
        for (t, def) in &self.export.targets {
            for w in &def.wanted_by {
                let p = sys.join(format!("{w}.wants/{t}.target"));
                if p.symlink_metadata().is_ok() {
                    fs_err::remove_file(&p)?;
                }
            }
        }
        for name in self.export.etc.keys() {
            let p = root.join("etc").join(name);
            if p.symlink_metadata().is_ok() {
                fs_err::remove_file(&p)?;
            }
        }
        Ok(())
    }

    /// Stop this generation's units and remove it; the firewall goes too.
    pub fn remove(&self, m: &Machine) -> Result<()> {
        let mut argv = vec!["systemctl", "stop"];
        argv.extend(
            self.units
                .keys()
                .filter(|u| !u.contains('/'))
                .map(String::as_str),
        );
        let _ = m.exec(&argv);
        self.unlink(m)?;
        self.firewall_off(m)?;
        // The next scenario is another system: its users may reuse the ids.
        for name in self.export.users.users.keys() {
            if m.exec(&["getent", "passwd", name])?.status.success() {
                m.ok(&["userdel", name])?;
            }
        }
        for name in self.export.users.groups.keys() {
            if m.exec(&["getent", "group", name])?.status.success() {
                m.ok(&["groupdel", name])?;
            }
        }
        m.daemon_reload()
    }

    /// `networking.firewall.enable = false` (to tell what the firewall does).
    pub fn firewall_off(&self, m: &Machine) -> Result<()> {
        let off = Firewall {
            enable: false,
            ..self.export.firewall.clone()
        };
        m.ok(&["sh", "-c", &nixos_fw::start_script(&off)])?;
        Ok(())
    }

    fn users(&self, m: &Machine) -> Result<()> {
        for (name, g) in &self.export.users.groups {
            if m.exec(&["getent", "group", name])?.status.success() {
                continue;
            }
            let mut argv = vec!["groupadd".to_owned()];
            if let Some(gid) = g.gid {
                argv.extend(["-g".to_owned(), gid.to_string()]);
            }
            argv.push(name.clone());
            m.ok(&argv.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        for (name, u) in &self.export.users.users {
            if m.exec(&["getent", "passwd", name])?.status.success() {
                continue;
            }
            let mut argv = vec!["useradd".to_owned(), "-M".to_owned()];
            if let Some(uid) = u.get("uid").and_then(serde_json::Value::as_u64) {
                argv.extend(["-u".to_owned(), uid.to_string()]);
            }
            if let Some(g) = u.get("group").and_then(serde_json::Value::as_str) {
                argv.extend(["-g".to_owned(), g.to_owned()]);
            }
            if let Some(gs) = u.get("extraGroups").and_then(serde_json::Value::as_array) {
                let gs: Vec<&str> = gs.iter().filter_map(serde_json::Value::as_str).collect();
                if !gs.is_empty() {
                    argv.extend(["-G".to_owned(), gs.join(",")]);
                }
            }
            if u.get("isSystemUser").and_then(serde_json::Value::as_bool) == Some(true) {
                argv.push("--system".to_owned());
            }
            if let Some(h) = u.get("home").and_then(serde_json::Value::as_str) {
                argv.extend(["-d".to_owned(), h.to_owned()]);
            }
            argv.extend([
                "-s".to_owned(),
                "/usr/sbin/nologin".to_owned(),
                name.clone(),
            ]);
            m.ok(&argv.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        Ok(())
    }

    fn firewall(&self, m: &Machine) -> Result<()> {
        let script = nixos_fw::start_script(&self.export.firewall);
        m.ok(&["sh", "-c", &script])
            .context("applying the NixOS firewall emulation (tests/e2e/harness/nixos_fw.rs)")?;
        Ok(())
    }
}

/// `ln -sfn target link`.
fn link(target: &Path, link: &Path) -> Result<()> {
    if link.symlink_metadata().is_ok() {
        fs_err::remove_file(link)?;
    }
    fs_err::os::unix::fs::symlink(target, link)?;
    Ok(())
}
