//! Every podman or Docker command the runtime runs, in one place.
//!
//! [`Engine`] builds an [`EngineCommand`] per engine operation (inspect,
//! exec, stop, secret create, ps, pull, image inspect, …): a program and an
//! argument list that unit tests read without running anything. One helper
//! runs it ([`EngineCommand::output`], [`EngineCommand::run`]) with errors
//! that name the command and say what to do. Where podman and Docker differ
//! (`ps`'s JSON, secrets, `healthcheck run`) the builder takes care of it.
//!
//! The units' own command lines (`ExecStart=podman run …`) are rendered by
//! [`crate::render`], not here: this module is what the binary runs itself.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::manifest::StackManifest;
use crate::spec::Backend;

/// One engine binary: which backend it is and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    pub backend: Backend,
    pub path: String,
}

/// One engine invocation, built but not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineCommand {
    backend: Backend,
    program: String,
    args: Vec<String>,
    /// Fed to the command's standard input (a secret's value: never argv).
    input: Option<Vec<u8>>,
}

impl Engine {
    pub fn new(backend: Backend, path: impl Into<String>) -> Self {
        Engine {
            backend,
            path: path.into(),
        }
    }

    /// The engine at `path`, its backend told by the binary's name
    /// (`docker…` is Docker, anything else podman). For the unit helpers
    /// whose command lines name only the binary (`stop-container --engine`).
    pub fn from_path(path: impl Into<String>) -> Self {
        let path = path.into();
        let name = Path::new(&path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let backend = if name.starts_with("docker") {
            Backend::Docker
        } else {
            Backend::Podman
        };
        Engine { backend, path }
    }

    fn command<I, S>(&self, args: I) -> EngineCommand
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        EngineCommand {
            backend: self.backend,
            program: self.path.clone(),
            args: args.into_iter().map(Into::into).collect(),
            input: None,
        }
    }

    /// Docker's registry configuration (insecure registries and networks)
    /// as JSON: `docker info --format={{json .RegistryConfig}}`.
    pub fn registry_config(&self) -> EngineCommand {
        self.command(["info", "--format={{json .RegistryConfig}}"])
    }

    /// `ENGINE --version`: "podman version 5.4.1", "Docker version 28.2.2, …".
    pub fn version(&self) -> EngineCommand {
        self.command(["--version"])
    }

    /// `ENGINE exec CONTAINER ARGV…`.
    pub fn exec(&self, container: &str, argv: &[&str]) -> EngineCommand {
        let mut args = vec!["exec".to_owned(), container.to_owned()];
        args.extend(argv.iter().map(|a| (*a).to_owned()));
        self.command(args)
    }

    /// The container's health command as its own health check runs it:
    /// `exec CONTAINER /bin/sh -c CMD`.
    pub fn exec_shell(&self, container: &str, cmd: &str) -> EngineCommand {
        self.exec(container, &["/bin/sh", "-c", cmd])
    }

    /// `podman healthcheck run CONTAINER`, which records the result in the
    /// container's health log; Docker has no such command (`None`).
    pub fn healthcheck_run(&self, container: &str) -> Option<EngineCommand> {
        (self.backend == Backend::Podman).then(|| self.command(["healthcheck", "run", container]))
    }

    /// `inspect --type=container --format=FORMAT CONTAINER`: one Go
    /// template over the container's inspect data.
    pub fn inspect_format(&self, container: &str, format: &str) -> EngineCommand {
        self.command([
            "inspect".to_owned(),
            "--type=container".to_owned(),
            format!("--format={format}"),
            container.to_owned(),
        ])
    }

    /// The container's state (`running`, `exited`, …).
    pub fn inspect_status(&self, container: &str) -> EngineCommand {
        self.inspect_format(container, "{{.State.Status}}")
    }

    /// The value of one label of a container ("" when it has none).
    pub fn inspect_label(&self, container: &str, label: &str) -> EngineCommand {
        self.inspect_format(
            container,
            &format!("{{{{index .Config.Labels \"{label}\"}}}}"),
        )
    }

    /// `inspect CONTAINER…`: the full JSON array for several objects.
    pub fn inspect_json(&self, containers: &[&str]) -> EngineCommand {
        let mut args = vec!["inspect".to_owned()];
        args.extend(containers.iter().map(|c| (*c).to_owned()));
        self.command(args)
    }

    /// `stop --time=GRACE CONTAINER`: the image's stop signal, `grace`
    /// seconds, then SIGKILL.
    pub fn stop(&self, container: &str, grace: u64) -> EngineCommand {
        self.command([
            "stop".to_owned(),
            format!("--time={grace}"),
            container.to_owned(),
        ])
    }

    /// `kill --signal=SIGNAL CONTAINER`.
    pub fn kill(&self, container: &str, signal: &str) -> EngineCommand {
        self.command([
            "kill".to_owned(),
            format!("--signal={signal}"),
            container.to_owned(),
        ])
    }

    /// `rm [--force] CONTAINER`.
    pub fn rm(&self, container: &str, force: bool) -> EngineCommand {
        let mut args = vec!["rm"];
        if force {
            args.push("--force");
        }
        args.push(container);
        self.command(args)
    }

    /// `ps --all --no-trunc` with one `--filter label=KEY=VALUE` per label
    /// (`label=KEY` when the value is empty), in the JSON that
    /// [`parse_ps`] reads: podman's array, or Docker's object per line.
    pub fn ps(&self, labels: &[(&str, &str)]) -> EngineCommand {
        let mut args = vec!["ps".to_owned(), "--all".to_owned(), "--no-trunc".to_owned()];
        for (key, value) in labels {
            args.push("--filter".to_owned());
            args.push(if value.is_empty() {
                format!("label={key}")
            } else {
                format!("label={key}={value}")
            });
        }
        // Docker's `--format json` is Docker ≥ 23; the template works on 20.
        args.push("--format".to_owned());
        args.push(match self.backend {
            Backend::Podman => "json".to_owned(),
            Backend::Docker => "{{json .}}".to_owned(),
        });
        self.command(args)
    }

    /// `pull IMAGE`.
    pub fn pull(&self, image: &str) -> EngineCommand {
        self.command(["pull", image])
    }

    /// `image inspect IMAGE`: the JSON that [`parse_image_inspect`] reads.
    pub fn image_inspect(&self, image: &str) -> EngineCommand {
        self.command(["image", "inspect", image])
    }

    /// `image inspect IMAGE…`: several images in one call.
    pub fn images_inspect(&self, images: &[&str]) -> EngineCommand {
        let mut args = vec!["image", "inspect"];
        args.extend(images);
        self.command(args)
    }

    /// `container inspect CONTAINER…`: the JSON that
    /// [`parse_container_images`] reads.
    pub fn containers_inspect(&self, containers: &[&str]) -> EngineCommand {
        let mut args = vec!["container", "inspect"];
        args.extend(containers);
        self.command(args)
    }

    /// `tag SOURCE TARGET`: point a local tag at an image (`repo@sha256:…`).
    pub fn tag(&self, source: &str, target: &str) -> EngineCommand {
        self.command(["tag", source, target])
    }

    /// `login --username USER --password-stdin REGISTRY`: the password goes
    /// to standard input, never on the command line. The engine keeps the
    /// credentials where its pulls (and `update`'s registry client) find
    /// them.
    pub fn login(&self, registry: &str, username: &str, password: &[u8]) -> EngineCommand {
        let mut c = self.command([
            "login".to_owned(),
            format!("--username={username}"),
            "--password-stdin".to_owned(),
            registry.to_owned(),
        ]);
        c.input = Some(password.to_vec());
        c
    }

    /// `load --input ARCHIVE`: an image archive (`podman save`, `docker save`).
    pub fn load(&self, archive: &Path) -> EngineCommand {
        self.command([
            "load".to_owned(),
            "--input".to_owned(),
            archive.to_string_lossy().into_owned(),
        ])
    }

    /// `secret create NAME -`, the value on standard input (never argv).
    pub fn secret_create(&self, name: &str, value: &[u8]) -> EngineCommand {
        let mut c = self.command(["secret", "create", name, "-"]);
        c.input = Some(value.to_vec());
        c
    }

    /// `secret rm NAME`.
    pub fn secret_rm(&self, name: &str) -> EngineCommand {
        self.command(["secret", "rm", name])
    }

    /// `network inspect NAME`: fails when there is no such network.
    pub fn network_inspect(&self, name: &str) -> EngineCommand {
        self.command(["network", "inspect", name])
    }

    /// `network rm NAME`.
    pub fn network_rm(&self, name: &str) -> EngineCommand {
        self.command(["network", "rm", name])
    }

    /// The container's state, or `None` when the engine says there is no
    /// such container. An engine that cannot be asked (not running, its
    /// command killed by a signal, any other failure) is an error: a failed
    /// read says nothing of the container.
    pub fn container_status(&self, container: &str) -> Result<Option<String>> {
        let cmd = self.inspect_status(container);
        let out = cmd.output()?;
        if out.status.success() {
            return Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()));
        }
        // podman: "no such container NAME"; Docker: "No such container: NAME"
        // (older: "No such object: NAME").
        let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
        if out.status.code().is_some()
            && (stderr.contains("no such container") || stderr.contains("no such object"))
        {
            return Ok(None);
        }
        bail!("{}", cmd.failure(&out))
    }

    /// The containers that carry every label of `labels`, from an engine
    /// that must answer within `timeout`.
    pub fn containers_within(
        &self,
        labels: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Vec<Container>> {
        let cmd = self.ps(labels);
        let out = cmd.output_within(timeout)?;
        if !out.status.success() {
            bail!("{}", cmd.failure(&out));
        }
        parse_ps(self.backend, &String::from_utf8_lossy(&out.stdout))
            .with_context(|| format!("reading the output of `{cmd}`"))
    }

    /// The containers that carry every label of `labels`.
    pub fn containers(&self, labels: &[(&str, &str)]) -> Result<Vec<Container>> {
        let cmd = self.ps(labels);
        let out = cmd.run()?;
        parse_ps(self.backend, &out).with_context(|| format!("reading the output of `{cmd}`"))
    }

    /// What the engine knows of a local image, `None` when it has no such
    /// image.
    pub fn image(&self, image: &str) -> Result<Option<Image>> {
        let cmd = self.image_inspect(image);
        let out = cmd.output()?;
        if !out.status.success() {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        parse_image_inspect(&text)
            .with_context(|| format!("reading the output of `{cmd}`"))
            .map(|mut v| (!v.is_empty()).then(|| v.swap_remove(0)))
    }
}

impl From<&StackManifest> for Engine {
    /// The engine a stack's units call.
    fn from(stack: &StackManifest) -> Self {
        Engine::new(stack.backend, stack.engine.clone())
    }
}

impl EngineCommand {
    pub fn program(&self) -> &str {
        &self.program
    }

    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The program and its arguments, as the tests compare them.
    pub fn argv(&self) -> Vec<&str> {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect()
    }

    /// The bytes fed to standard input, if any.
    pub fn input(&self) -> Option<&[u8]> {
        self.input.as_deref()
    }

    /// Run it and collect its output whatever its exit status; standard
    /// input is [`Self::input`] or nothing. `Err` only when it cannot be
    /// started.
    pub fn output(&self) -> Result<Output> {
        self.spawn()?
            .wait_with_output()
            .with_context(|| format!("waiting for `{self}`"))
    }

    /// Start it with its output piped and [`Self::input`] written to its
    /// standard input (then closed; nothing when there is no input).
    fn spawn(&self) -> Result<Child> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if self.input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run `{self}`; is {} installed at {}? Set the engine's path in the \
                     spec (\"engine\": {{\"path\": …}}) if it lives elsewhere",
                    self.backend, self.program
                )
            })?;
        if let (Some(bytes), Some(mut stdin)) = (&self.input, child.stdin.take()) {
            stdin
                .write_all(bytes)
                .with_context(|| format!("writing to the standard input of `{self}`"))?;
        }
        Ok(child)
    }

    /// [`Self::output`], but an engine that has not finished within
    /// `timeout` is killed and reported as not answering.
    pub fn output_within(&self, timeout: Duration) -> Result<Output> {
        let mut child = self.spawn()?;
        // Read both pipes while waiting, so a large listing cannot fill a
        // pipe and stall the engine.
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            })
        };
        let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .with_context(|| format!("waiting for `{self}`"))?
            {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "`{self}` did not answer within {}s; check that {} works ({} info) and \
                     is not stuck",
                    timeout.as_secs_f32(),
                    self.backend,
                    self.program
                );
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        };
        Ok(Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    }

    /// Run it and require success; returns its standard output. The error
    /// names the command and quotes the engine's first line of complaint.
    pub fn run(&self) -> Result<String> {
        let out = self.output()?;
        if !out.status.success() {
            bail!("{}", self.failure(&out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Run it, handing each line it prints (on stdout or stderr) to
    /// `on_line` as it comes (a pull's progress); requires success. The
    /// error quotes its last line.
    pub fn run_lines(&self, on_line: &mut dyn FnMut(&str)) -> Result<()> {
        use std::io::BufRead;
        let mut child = self.spawn()?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let forward = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                if let Some(p) = pipe {
                    for line in std::io::BufReader::new(p).lines().map_while(|l| l.ok()) {
                        let _ = tx.send(line);
                    }
                }
            })
        };
        let a = forward(child.stdout.take().map(|p| Box::new(p) as _));
        let b = forward(child.stderr.take().map(|p| Box::new(p) as _));
        drop(tx);
        let mut last = String::new();
        for line in rx {
            // Carriage returns redraw a line on a terminal: keep the last.
            let line = line.rsplit('\r').next().unwrap_or("").trim().to_owned();
            if !line.is_empty() {
                on_line(&line);
                last = line;
            }
        }
        let _ = (a.join(), b.join());
        let status = child
            .wait()
            .with_context(|| format!("waiting for `{self}`"))?;
        if !status.success() {
            bail!(
                "`{self}` failed ({status}){}{last}; run it by hand to see the whole message",
                if last.is_empty() { "" } else { ": " }
            );
        }
        Ok(())
    }

    /// Run it, ignoring its output: whether it succeeded.
    pub fn succeeds(&self) -> bool {
        self.output().is_ok_and(|o| o.status.success())
    }

    /// Why a finished run failed, for an error message.
    pub fn failure(&self, out: &Output) -> String {
        let text = String::from_utf8_lossy(&out.stderr);
        let first = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        format!(
            "`{self}` failed ({}){}{}; check that {} works for this user (`{} info`)",
            out.status,
            if first.is_empty() { "" } else { ": " },
            first,
            self.backend,
            self.program,
        )
    }
}

impl std::fmt::Display for EngineCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let argv = self.argv();
        match shlex::try_join(argv.iter().copied()) {
            Ok(s) => f.write_str(&s),
            // An argument with a NUL byte cannot be quoted; show it raw.
            Err(_) => f.write_str(&argv.join(" ")),
        }
    }
}

/// One container as `ps` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub names: Vec<String>,
    pub image: String,
    /// The engine's state: `created`, `running`, `exited`, `paused`, …
    pub state: String,
    pub labels: BTreeMap<String, String>,
    /// When it was created, as the engine prints it (podman: RFC 3339 from
    /// its seconds; Docker: its `CreatedAt`).
    pub created: String,
    /// Its main process in the engine's PID namespace, while it runs
    /// (podman only: Docker's `ps` does not say).
    pub pid: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PodmanPs {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    image: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    /// Seconds since the epoch.
    #[serde(default)]
    created: Option<u64>,
    #[serde(default)]
    pid: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerPs {
    #[serde(rename = "ID")]
    id: String,
    #[serde(default)]
    names: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    labels: String,
    #[serde(default)]
    created_at: String,
}

/// Read [`Engine::ps`]'s output. Docker joins the labels into one
/// `k=v,k=v` string: a piece without `=` belongs to the value before it,
/// so only a value that itself contains `,KEY=` reads wrong (the stack's
/// own labels never do).
pub fn parse_ps(backend: Backend, stdout: &str) -> Result<Vec<Container>> {
    match backend {
        Backend::Podman => {
            let text = stdout.trim();
            if text.is_empty() {
                return Ok(Vec::new());
            }
            let list: Vec<PodmanPs> =
                serde_json::from_str(text).context("podman ps printed no JSON array")?;
            Ok(list
                .into_iter()
                .map(|c| Container {
                    id: c.id,
                    names: c.names,
                    image: c.image,
                    state: c.state,
                    labels: c.labels.unwrap_or_default(),
                    created: c
                        .created
                        .map(|s| {
                            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
                            humantime::format_rfc3339_seconds(t).to_string()
                        })
                        .unwrap_or_default(),
                    pid: c.pid.filter(|p| *p != 0),
                })
                .collect())
        }
        Backend::Docker => stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let c: DockerPs = serde_json::from_str(line)
                    .with_context(|| format!("docker ps printed a line that is no JSON: {line}"))?;
                Ok(Container {
                    id: c.id,
                    names: c
                        .names
                        .split(',')
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    image: c.image,
                    state: c.state,
                    labels: docker_labels(&c.labels),
                    created: c.created_at,
                    pid: None,
                })
            })
            .collect(),
    }
}

fn docker_labels(joined: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut last: Option<String> = None;
    for piece in joined.split(',').filter(|p| !p.is_empty()) {
        match (piece.split_once('='), &last) {
            (Some((k, v)), _) => {
                labels.insert(k.to_owned(), v.to_owned());
                last = Some(k.to_owned());
            }
            (None, Some(k)) => {
                if let Some(v) = labels.get_mut(k) {
                    v.push(',');
                    v.push_str(piece);
                }
            }
            (None, None) => {
                labels.insert(piece.to_owned(), String::new());
                last = Some(piece.to_owned());
            }
        }
    }
    labels
}

/// A local image as `image inspect` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Image {
    /// The image ID (Docker prefixes it with `sha256:`, podman does not).
    pub id: String,
    /// podman's digest of the manifest it pulled (`sha256:…`); Docker has
    /// none here: use [`Image::repo_digest`].
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub repo_tags: Vec<String>,
    /// `repository@sha256:…`, one per repository it was pulled from.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub repo_digests: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

impl Image {
    /// The digest (`sha256:…`) the image has in `repository` (as written
    /// in `repo_digests`, e.g. `docker.io/library/alpine`), or the first
    /// one when `repository` is `None`.
    pub fn repo_digest(&self, repository: Option<&str>) -> Option<&str> {
        self.repo_digests.iter().find_map(|rd| {
            let (repo, digest) = rd.split_once('@')?;
            repository.is_none_or(|r| r == repo).then_some(digest)
        })
    }
}

/// A container's image as `container inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerImage {
    /// The container's name (Docker writes it with a leading `/`).
    pub name: String,
    /// The image's ID (Docker: `sha256:…`).
    pub image: String,
    /// podman: the digest of the manifest the image was first stored
    /// under (an image pulled again under another manifest keeps it).
    #[serde(default)]
    pub image_digest: Option<String>,
    /// podman: the image reference the container was created from.
    #[serde(default)]
    pub image_name: Option<String>,
    /// Docker: `Config.Image`, the reference it was created from.
    #[serde(default)]
    pub config: Option<ContainerConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default)]
    pub image: Option<String>,
}

impl ContainerImage {
    /// The reference the container was created from (`repo:tag` or
    /// `repo@sha256:…`).
    pub fn reference(&self) -> Option<&str> {
        self.image_name
            .as_deref()
            .or_else(|| self.config.as_ref()?.image.as_deref())
            .filter(|r| !r.is_empty())
    }
}

/// Read [`Engine::containers_inspect`]'s output.
pub fn parse_container_images(stdout: &str) -> Result<Vec<ContainerImage>> {
    let mut v: Vec<ContainerImage> =
        serde_json::from_str(stdout.trim()).context("container inspect printed no JSON array")?;
    for c in &mut v {
        c.name = c.name.trim_start_matches('/').to_owned();
    }
    Ok(v)
}

/// Read [`Engine::image_inspect`]'s output (the same JSON array on both
/// engines).
pub fn parse_image_inspect(stdout: &str) -> Result<Vec<Image>> {
    serde_json::from_str(stdout.trim()).context("image inspect printed no JSON array")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn podman() -> Engine {
        Engine::new(Backend::Podman, "/usr/bin/podman")
    }

    fn docker() -> Engine {
        Engine::new(Backend::Docker, "/usr/bin/docker")
    }

    #[test]
    fn backend_from_the_binary_name() {
        assert_eq!(
            Engine::from_path("/usr/bin/docker").backend,
            Backend::Docker
        );
        assert_eq!(
            Engine::from_path("/run/current-system/sw/bin/podman").backend,
            Backend::Podman
        );
        assert_eq!(Engine::from_path("docker").backend, Backend::Docker);
    }

    #[test]
    fn argv_the_same_on_both_engines() {
        for (e, p) in [(podman(), "/usr/bin/podman"), (docker(), "/usr/bin/docker")] {
            assert_eq!(e.version().argv(), [p, "--version"]);
            assert_eq!(
                e.exec_shell("web", "curl -f localhost").argv(),
                [p, "exec", "web", "/bin/sh", "-c", "curl -f localhost"]
            );
            assert_eq!(
                e.inspect_status("web").argv(),
                [
                    p,
                    "inspect",
                    "--type=container",
                    "--format={{.State.Status}}",
                    "web"
                ]
            );
            assert_eq!(
                e.inspect_label("web", "nixarr.config-hash").argv(),
                [
                    p,
                    "inspect",
                    "--type=container",
                    "--format={{index .Config.Labels \"nixarr.config-hash\"}}",
                    "web"
                ]
            );
            assert_eq!(e.inspect_json(&["a", "b"]).argv(), [p, "inspect", "a", "b"]);
            assert_eq!(e.stop("web", 10).argv(), [p, "stop", "--time=10", "web"]);
            assert_eq!(
                e.kill("web", "KILL").argv(),
                [p, "kill", "--signal=KILL", "web"]
            );
            assert_eq!(e.rm("web", true).argv(), [p, "rm", "--force", "web"]);
            assert_eq!(e.rm("web", false).argv(), [p, "rm", "web"]);
            assert_eq!(e.pull("alpine:3").argv(), [p, "pull", "alpine:3"]);
            assert_eq!(
                e.image_inspect("alpine:3").argv(),
                [p, "image", "inspect", "alpine:3"]
            );
            assert_eq!(
                e.load(Path::new("/tmp/a.tar")).argv(),
                [p, "load", "--input", "/tmp/a.tar"]
            );
            assert_eq!(
                e.network_inspect("n").argv(),
                [p, "network", "inspect", "n"]
            );
            assert_eq!(e.network_rm("n").argv(), [p, "network", "rm", "n"]);
            assert_eq!(e.secret_rm("s").argv(), [p, "secret", "rm", "s"]);
        }
    }

    #[test]
    fn a_secret_goes_through_stdin_never_argv() {
        let c = podman().secret_create("web-key", b"hunter2");
        assert_eq!(
            c.argv(),
            ["/usr/bin/podman", "secret", "create", "web-key", "-"]
        );
        assert_eq!(c.input(), Some(&b"hunter2"[..]));
        assert!(!c.to_string().contains("hunter2"));
    }

    #[test]
    fn ps_filters_by_label_and_asks_for_json() {
        let labels = [("nixarr.stack", "media"), ("nixarr.managed", "")];
        // Docker's `--format json` is Docker ≥ 23; the template works on 20.
        for (e, p, format) in [
            (podman(), "/usr/bin/podman", "json"),
            (docker(), "/usr/bin/docker", "{{json .}}"),
        ] {
            assert_eq!(
                e.ps(&labels).argv(),
                [
                    p,
                    "ps",
                    "--all",
                    "--no-trunc",
                    "--filter",
                    "label=nixarr.stack=media",
                    "--filter",
                    "label=nixarr.managed",
                    "--format",
                    format
                ]
            );
        }
    }

    #[test]
    fn healthcheck_run_is_podman_only() {
        let c = podman().healthcheck_run("web").map(|c| c.to_string());
        assert_eq!(c.as_deref(), Some("/usr/bin/podman healthcheck run web"));
        assert!(docker().healthcheck_run("web").is_none());
    }

    #[test]
    fn shown_quoted_as_a_shell_would_read_it() {
        let c = podman().exec_shell("web", "test -f /x");
        assert_eq!(
            c.to_string(),
            "/usr/bin/podman exec web /bin/sh -c 'test -f /x'"
        );
    }

    // As podman 4.3 prints it (one container created with two labels).
    const PODMAN_PS: &str = r#"[
  {
    "AutoRemove": false, "Command": null, "Exited": false, "ExitCode": 0,
    "Id": "354f5be0e693af4999f21396461f8188f8fa25d6ca1bd16ff1660becabc2ac9a",
    "Image": "localhost/nixarr-fake-app:test",
    "Labels": { "nixarr.stack": "x", "odd": "a,b=c" },
    "Names": [ "engineprobe" ], "Pid": 0, "State": "created", "Status": "Created",
    "Created": 1796124909
  },
  { "Id": "ab", "Image": "i", "Labels": null, "Names": ["n"], "State": "running", "Pid": 5544 }
]"#;

    #[test]
    fn podman_ps_json_is_read() {
        let list = parse_ps(Backend::Podman, PODMAN_PS).expect("parses");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].names, ["engineprobe"]);
        assert_eq!(list[0].state, "created");
        assert_eq!(list[0].labels["odd"], "a,b=c");
        assert_eq!(list[0].labels["nixarr.stack"], "x");
        assert!(list[1].labels.is_empty());
        assert_eq!(list[0].created, "2026-12-01T11:35:09Z");
        assert_eq!((list[0].pid, list[1].pid), (None, Some(5544)));
        assert!(parse_ps(Backend::Podman, "").expect("empty").is_empty());
        assert!(parse_ps(Backend::Podman, "[]\n").expect("empty").is_empty());
        assert!(parse_ps(Backend::Podman, "Error: oops").is_err());
    }

    #[test]
    fn docker_ps_json_lines_are_read() {
        let out = concat!(
            r#"{"Command":"\"/app/run\"","ID":"0123abcd","Image":"alpine:3","Labels":"nixarr.stack=media,flag=,url=http://x/?a=1,b","Names":"web","State":"running","Status":"Up 2 seconds","CreatedAt":"2026-12-01 11:35:09 +0000 UTC"}"#,
            "\n",
            r#"{"ID":"ffff","Image":"busybox","Labels":"","Names":"a,b","State":"exited"}"#,
            "\n"
        );
        let list = parse_ps(Backend::Docker, out).expect("parses");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].id, "0123abcd");
        assert_eq!(list[0].names, ["web"]);
        assert_eq!(list[0].labels["nixarr.stack"], "media");
        assert_eq!(list[0].labels["flag"], "");
        assert_eq!(list[0].labels["url"], "http://x/?a=1,b");
        assert_eq!(list[1].names, ["a", "b"]);
        assert!(list[1].labels.is_empty());
        assert_eq!(list[1].state, "exited");
        assert_eq!(list[0].created, "2026-12-01 11:35:09 +0000 UTC");
        assert_eq!(list[0].pid, None);
        assert!(parse_ps(Backend::Docker, "").expect("empty").is_empty());
        assert!(parse_ps(Backend::Docker, "Cannot connect").is_err());
    }

    #[test]
    fn image_inspect_gives_the_digests() {
        // podman (Digest, no sha256: on the ID) and Docker (RepoDigests only).
        let podman_out = r#"[{"Id":"3cea5a36","Digest":"sha256:a540","RepoTags":["localhost/app:test"],"RepoDigests":["localhost/app@sha256:a540"]}]"#;
        let docker_out = r#"[{"Id":"sha256:9c45","RepoTags":["alpine:3"],"RepoDigests":["alpine@sha256:1111","registry.example/alpine@sha256:2222"],"Config":{}}]"#;
        let p = parse_image_inspect(podman_out).expect("podman");
        assert_eq!(p[0].digest.as_deref(), Some("sha256:a540"));
        assert_eq!(p[0].repo_digest(None), Some("sha256:a540"));
        let d = parse_image_inspect(docker_out).expect("docker");
        assert_eq!(d[0].digest, None);
        assert_eq!(
            d[0].repo_digest(Some("registry.example/alpine")),
            Some("sha256:2222")
        );
        assert_eq!(d[0].repo_digest(Some("quay.io/x")), None);
        let none = parse_image_inspect(r#"[{"Id":"x","RepoTags":null,"RepoDigests":null}]"#)
            .expect("nulls");
        assert!(none[0].repo_digests.is_empty());
    }

    #[test]
    fn run_names_the_command_when_it_fails() {
        let e = Engine::new(Backend::Podman, "/bin/sh");
        let c = e.exec("x", &[]);
        // `/bin/sh exec x`: sh cannot exec `x`.
        let err = c.run().expect_err("fails").to_string();
        assert!(
            err.starts_with("`/bin/sh exec x` failed (exit status: "),
            "{err}"
        );
        assert!(
            err.ends_with("check that podman works for this user (`/bin/sh info`)"),
            "{err}"
        );
        let missing = Engine::new(Backend::Docker, "/nonexistent/docker").version();
        let err = format!("{:#}", missing.run().expect_err("cannot start"));
        assert!(err.contains("cannot run `/nonexistent/docker --version`; is docker installed at /nonexistent/docker?"), "{err}");
    }

    #[test]
    fn an_engine_that_does_not_answer_is_killed_and_named() {
        let hung = Engine::new(Backend::Podman, "/bin/sleep");
        let start = Instant::now();
        let e = hung
            .command(["30"])
            .output_within(Duration::from_millis(200))
            .expect_err("times out");
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(
            e.to_string().contains("did not answer within 0.2s"),
            "{e:#}"
        );
        let quick = Engine::new(Backend::Podman, "/bin/echo");
        let out = quick
            .command(["hi"])
            .output_within(Duration::from_secs(5))
            .expect("runs");
        assert_eq!(out.stdout, b"hi\n");
    }

    #[test]
    fn image_commands_and_login() {
        for (e, p) in [(podman(), "/usr/bin/podman"), (docker(), "/usr/bin/docker")] {
            assert_eq!(
                e.images_inspect(&["a", "b"]).argv(),
                [p, "image", "inspect", "a", "b"]
            );
            assert_eq!(
                e.containers_inspect(&["x"]).argv(),
                [p, "container", "inspect", "x"]
            );
            assert_eq!(
                e.tag("r/a@sha256:1", "r/a:v").argv(),
                [p, "tag", "r/a@sha256:1", "r/a:v"]
            );
            // The password only on standard input.
            let login = e.login("127.0.0.1:5000", "me", b"s3cret");
            assert_eq!(
                login.argv(),
                [
                    p,
                    "login",
                    "--username=me",
                    "--password-stdin",
                    "127.0.0.1:5000"
                ]
            );
            assert!(!login.to_string().contains("s3cret"));
            assert_eq!(login.input(), Some(&b"s3cret"[..]));
        }
    }

    #[test]
    fn container_images_on_both_engines() {
        let podman = r#"[{"Name":"nixarr-a","Image":"0123abcd","ImageDigest":"sha256:11",
            "ImageName":"r/a@sha256:22","Other":1}]"#;
        let docker = r#"[{"Name":"/nixarr-a","Image":"sha256:0123abcd","Config":{"Image":"r/a:1","Env":[]}}]"#;
        let p = parse_container_images(podman).expect("podman");
        assert_eq!(p[0].name, "nixarr-a");
        assert_eq!(p[0].image_digest.as_deref(), Some("sha256:11"));
        assert_eq!(p[0].reference(), Some("r/a@sha256:22"));
        let d = parse_container_images(docker).expect("docker");
        assert_eq!(d[0].name, "nixarr-a");
        assert_eq!(d[0].image, "sha256:0123abcd");
        assert_eq!(d[0].image_digest, None);
        assert_eq!(d[0].reference(), Some("r/a:1"));
    }

    #[test]
    fn lines_stream_as_they_come() {
        let sh = Engine::new(Backend::Podman, "/bin/sh");
        let mut c = sh.command(["-c", "echo one; echo two >&2; printf 'a\\rb\\n'"]);
        let mut seen = Vec::new();
        c.run_lines(&mut |l| seen.push(l.to_owned())).expect("runs");
        seen.sort();
        assert_eq!(seen, ["b", "one", "two"]);
        c.args = vec!["-c".to_owned(), "echo no such image >&2; exit 3".to_owned()];
        let e = c.run_lines(&mut |_| {}).expect_err("fails").to_string();
        assert!(e.contains("no such image"), "{e}");
    }

    #[test]
    fn input_reaches_stdin() {
        let mut c = Engine::new(Backend::Podman, "/bin/sh").exec("x", &[]);
        c.args = vec!["-c".to_owned(), "cat".to_owned()];
        c.input = Some(b"value".to_vec());
        assert_eq!(c.run().expect("cat"), "value");
    }
}
