//! [`Scenario`]: what one scenario gets, its prefix and its spec.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use super::SCENARIO_LABEL;
use super::host::host;
use nixarr_units::manifest::StackManifest;
use nixarr_units::render::Names;

use super::machine::{Backend, Machine, engine_path};

/// What a scenario gets: the machine, its own prefix and a place to keep
/// notes (printed in the summary, e.g. for behaviour expected later).
pub struct Scenario<'a> {
    pub m: &'a Machine,
    pub prefix: String,
    pub notes: Vec<String>,
}

impl Scenario<'_> {
    /// The names of this scenario's units and containers, as the renderer
    /// gives them.
    pub fn names(&self) -> Names<'_> {
        Names::new(&self.prefix)
    }
    pub fn unit(&self, svc: &str) -> String {
        self.names().unit(svc)
    }
    pub fn container(&self, svc: &str) -> String {
        self.names().container(svc)
    }
    /// SIGKILL the main process of `svc`'s container.
    pub fn kill_app(&self, svc: &str) -> Result<()> {
        let pid = self
            .m
            .engine(&[
                "inspect",
                "--type=container",
                "--format={{.State.Pid}}",
                &self.container(svc),
            ])?
            .trim()
            .to_owned();
        anyhow::ensure!(pid != "0" && !pid.is_empty(), "container has no PID");
        match self.m.backend {
            // podman inside the machine reports PIDs of the machine's
            // namespace; dockerd runs on the host: host PIDs.
            Backend::Podman => self.m.ok(&["kill", "-KILL", &pid]).map(drop),
            Backend::Docker => host(Command::new("kill").args(["-KILL", &pid])).map(drop),
        }
    }
    /// This scenario's stack in the generator's manifest.
    pub fn stack(&self) -> Result<StackManifest> {
        let manifest = self.m.manifest()?;
        Ok(manifest
            .stack(&self.m.manifest_path(), &self.prefix)?
            .clone())
    }

    /// Write the generator's manifest with this scenario's stack changed by
    /// `edit` to `dest` (on the host), e.g. for `--manifest`.
    pub fn write_edited_manifest(
        &self,
        dest: &Path,
        edit: impl FnOnce(&mut StackManifest),
    ) -> Result<()> {
        let mut manifest = self.m.manifest()?;
        let stack = manifest
            .stacks
            .iter_mut()
            .find(|s| s.prefix == self.prefix)
            .with_context(|| format!("no stack `{}` in the generator's manifest", self.prefix))?;
        edit(stack);
        fs_err::write(dest, manifest.to_json()?)?;
        Ok(())
    }

    pub fn target(&self) -> String {
        self.names().target()
    }

    /// A spec for this scenario's backend and prefix, with `services`.
    pub fn spec(&self, services: serde_json::Value) -> serde_json::Value {
        let mut services = services;
        if let Some(map) = services.as_object_mut() {
            for svc in map.values_mut() {
                if let Some(o) = svc.as_object_mut() {
                    let labels = o.entry("labels").or_insert_with(|| serde_json::json!({}));
                    if let Some(l) = labels.as_object_mut() {
                        l.insert(SCENARIO_LABEL.to_owned(), self.prefix.clone().into());
                        self.m.claim_scenario_label(&self.prefix);
                    }
                }
            }
        }
        serde_json::json!({
            "version": 1,
            "backend": self.m.backend.name(),
            "prefix": self.prefix,
            "engine": { "path": engine_path(self.m.backend) },
            "services": services,
        })
    }

    /// Install the spec and daemon-reload.
    pub fn install(&self, spec: &serde_json::Value) -> Result<()> {
        self.m.write_spec(&self.prefix, spec)?;
        self.m.daemon_reload()
    }

    /// What `render --out` writes for the installed spec (the generator
    /// writes units only) into `out`, a path on the machine.
    pub fn render_installed(&self, out: &str) -> Result<()> {
        let exe = format!("{}/nixarr-units", super::MACHINE_BIN_DIR);
        let spec = format!("/etc/nixarr-units/{}.json", self.prefix);
        self.m
            .ok(&[&exe, "render", "--spec", &spec, "--out", out])
            .map(drop)
    }

    pub fn start_target(&self) -> Result<()> {
        self.m.systemctl(&["start", &self.target()]).map(drop)
    }

    /// A label of the running container.
    pub fn label(&self, svc: &str, key: &str) -> Result<String> {
        Ok(self
            .m
            .engine(&[
                "inspect",
                "--type=container",
                &format!("--format={{{{index .Config.Labels \"{key}\"}}}}"),
                &self.container(svc),
            ])?
            .trim()
            .to_owned())
    }

    /// Names of this scenario's containers that exist (any state).
    pub fn containers(&self) -> Result<Vec<String>> {
        Ok(self
            .m
            .managed_containers()?
            .into_iter()
            .filter(|n| n.starts_with(&format!("{}-", self.prefix)))
            .collect())
    }

    /// Stop everything of this scenario and remove what it created.
    pub(super) fn cleanup(&self) {
        let m = self.m;
        let pattern = format!("{}*", self.prefix);
        let _ = m.exec(&["systemctl", "stop", &self.target(), &pattern]);
        let _ = m.remove_spec(&self.prefix);
        let _ = m.daemon_reload();
        let _ = m.exec(&["systemctl", "reset-failed", &pattern]);
        if let Ok(names) = self.containers() {
            for n in names {
                let _ = m.engine(&["rm", "-f", &n]);
            }
        }
        let _ = m.engine(&["network", "rm", &self.prefix]);
    }
}

/// One scenario: a name and its body.
pub type ScenarioFn = fn(&mut Scenario) -> Result<()>;
