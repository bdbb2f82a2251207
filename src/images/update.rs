//! `update`: which services run an image whose tag now points elsewhere,
//! and moving them there without leaving a broken app behind.
//!
//! A check asks the registry for each tag's digest ([`Registry`]) and the
//! engine for the digest each running container runs; it changes nothing.
//! An update then pulls the new digests (by digest, so a tag that moves
//! again meanwhile changes nothing), records them — in the image lock when
//! the stack has one (the units, rendered again by `daemon-reload`, run
//! `repo@sha256:…`), else by pointing the local tag at the digest — and
//! restarts exactly the services whose digest changed, in one batch of
//! systemd jobs (ordered by the units' `After=`, each done once its health
//! gate passed). A service that does not come back healthy gets its
//! previous digest back the same way, is restarted and checked again, and
//! is reported as rolled back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::engine::{ContainerImage, Engine, Image, parse_container_images, parse_image_inspect};
use crate::images::lock::{Lock, Resolved, is_tag_reference, pinned_reference, repository};
use crate::images::registry::{Registry, reference_of};
use crate::manifest::{Manifest, ServiceManifest, StackManifest};
use crate::systemd::Systemd;

/// One service's image, as a check sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageCheck {
    pub service: String,
    pub unit: String,
    #[serde(skip)]
    pub container: String,
    pub image: String,
    /// `image` as the engine pulls and records it (a podman short name
    /// qualified through registries.conf).
    #[serde(skip)]
    pub pulled_as: String,
    /// The digest the running container runs (`None`: not running).
    pub running: Option<String>,
    /// The digest the image lock pins.
    pub locked: Option<String>,
    /// The digest the tag points to in its registry now.
    pub available: Option<String>,
    pub state: CheckState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CheckState {
    /// Runs (or would run) what the tag points to.
    Current,
    /// The tag points to another digest.
    UpdateAvailable,
    /// Loaded from an image file: never updated.
    ImageFile,
    /// A digest reference in the spec: pinned there.
    PinnedInSpec,
}

impl ImageCheck {
    /// The digest the service runs now, or would run when started: the
    /// running container's, else the lock's.
    pub fn current(&self) -> Option<&str> {
        self.running.as_deref().or(self.locked.as_deref())
    }
}

/// The services of one stack that a run is about.
pub struct Selection<'a> {
    pub stack: &'a StackManifest,
    pub services: Vec<&'a ServiceManifest>,
    pub names: Vec<String>,
}

/// The selected services, grouped by stack (`names` empty: every service).
pub fn select<'a>(manifest: &'a Manifest, names: &[String]) -> Result<Vec<Selection<'a>>> {
    let picked = crate::control::select(manifest, names)?;
    let mut out: Vec<Selection<'a>> = Vec::new();
    for (i, name) in picked {
        let Some(stack) = manifest.stacks.get(i) else {
            continue;
        };
        let Some(svc) = stack.services.get(&name) else {
            continue;
        };
        match out.iter_mut().find(|s| std::ptr::eq(s.stack, stack)) {
            Some(sel) if !sel.names.contains(&name) => {
                sel.services.push(svc);
                sel.names.push(name);
            }
            Some(_) => {}
            None => out.push(Selection {
                stack,
                services: vec![svc],
                names: vec![name],
            }),
        }
    }
    Ok(out)
}

pub fn engine_of(stack: &StackManifest) -> Engine {
    Engine::new(stack.backend, stack.engine.clone())
}

/// A service whose container's digest is asked.
#[derive(Debug, Clone)]
pub struct Running<'a> {
    pub service: &'a str,
    pub container: &'a str,
    pub image: &'a str,
    /// The digests to report, in this order, when the image has one of
    /// them among others (one image stored under several manifests has
    /// all their digests: it is the same image).
    pub prefer: Vec<&'a str>,
}

/// The digest container `c` runs, `image` being its image as `image
/// inspect` shows it and `tag` the reference its unit names.
pub fn container_digest(
    c: &ContainerImage,
    image: Option<&Image>,
    tag: &str,
    prefer: &[&str],
) -> Option<String> {
    // Created from `repo@sha256:…`: that digest. From a tag: one of the
    // digests the image has in the tag's repository. One image often has
    // several there: podman adds the digest of every manifest it was
    // stored under (an image built or imported here and pulled back after
    // a push; an index's digest beside its instance's) and lists them in
    // text order, and its ImageDigest stays the first one stored. So the
    // preferred digests first (the registry's, then the lock's), then
    // ImageDigest when the repository has it, then the first listed.
    let known: Vec<&str> = image
        .map(|i| {
            i.repo_digests
                .iter()
                .filter_map(|rd| rd.split_once('@'))
                .filter(|(repo, _)| same_repository(repo, repository(tag)))
                .map(|(_, d)| d)
                .collect()
        })
        .unwrap_or_default();
    c.reference()
        .and_then(|r| r.split_once('@'))
        .map(|(_, d)| d.to_owned())
        .or_else(|| {
            prefer
                .iter()
                .find(|p| known.contains(p))
                .map(|p| (*p).to_owned())
        })
        .or_else(|| {
            c.image_digest
                .clone()
                .filter(|d| known.contains(&d.as_str()))
        })
        .or_else(|| known.first().map(|d| (*d).to_owned()))
        .or_else(|| c.image_digest.clone().filter(|d| !d.is_empty()))
        .or_else(|| image?.repo_digest(None).map(str::to_owned))
}

/// Whether two spellings name one repository: podman records a short
/// name's image under its full name (`docker.io/library/app` for `app`),
/// Docker under the familiar one.
fn same_repository(a: &str, b: &str) -> bool {
    let name = |r: &str| {
        reference_of(r)
            .ok()
            .map(|r| (r.registry().to_owned(), r.repository().to_owned()))
    };
    a == b || name(a).is_some_and(|n| Some(n) == name(b))
}

/// What the engine says of some containers that run: each one's image,
/// and those images' digests. Asked before the digests to prefer are
/// known, so a check asks the engine while it asks the registries.
#[derive(Debug, Default)]
pub struct RunningImages {
    containers: Vec<ContainerImage>,
    images: Vec<Image>,
}

impl RunningImages {
    /// Those of `containers` that run. Three engine calls whatever their
    /// number: `ps`, `container inspect`, `image inspect`.
    pub fn query(engine: &Engine, containers: &[&str]) -> Result<Self> {
        let running: Vec<String> = engine
            .containers(&[(crate::render::LABEL_MANAGED, "true")])?
            .into_iter()
            .filter(|c| c.state == "running")
            .flat_map(|c| c.names)
            .map(|n| n.trim_start_matches('/').to_owned())
            .filter(|n| containers.contains(&n.as_str()))
            .collect();
        if running.is_empty() {
            return Ok(RunningImages::default());
        }
        let names: Vec<&str> = running.iter().map(String::as_str).collect();
        let cmd = engine.containers_inspect(&names);
        let containers = parse_container_images(&cmd.run()?)
            .with_context(|| format!("reading the output of `{cmd}`"))?;
        let ids: BTreeSet<&str> = containers.iter().map(|c| c.image.as_str()).collect();
        let ids: Vec<&str> = ids.into_iter().collect();
        let cmd = engine.images_inspect(&ids);
        let images = parse_image_inspect(&cmd.run()?)
            .with_context(|| format!("reading the output of `{cmd}`"))?;
        Ok(RunningImages { containers, images })
    }

    /// The digest each of `services` runs, by service (absent: its
    /// container does not run).
    pub fn digests(&self, services: &[Running<'_>]) -> BTreeMap<String, String> {
        let wanted: BTreeMap<&str, &Running<'_>> =
            services.iter().map(|r| (r.container, r)).collect();
        let bare = |id: &str| id.trim_start_matches("sha256:").to_owned();
        let mut out = BTreeMap::new();
        for c in &self.containers {
            let Some(r) = wanted.get(c.name.as_str()) else {
                continue;
            };
            let image = self.images.iter().find(|i| bare(&i.id) == bare(&c.image));
            if let Some(d) = container_digest(c, image, r.image, &r.prefer) {
                out.insert(r.service.to_owned(), d);
            }
        }
        out
    }
}

/// The digest each running container of `services` runs, by service.
pub fn running_digests(
    engine: &Engine,
    services: &[Running<'_>],
) -> Result<BTreeMap<String, String>> {
    let containers: Vec<&str> = services.iter().map(|r| r.container).collect();
    Ok(RunningImages::query(engine, &containers)?.digests(services))
}

/// Where a stack's image lock is: `--lock`, else the one its units were
/// rendered with.
pub fn lock_path(stack: &StackManifest, given: Option<&Path>) -> Option<PathBuf> {
    given
        .map(|p| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                std::env::current_dir().map_or_else(|_| p.to_path_buf(), |d| d.join(p))
            }
        })
        .or_else(|| stack.image_lock.as_ref().map(PathBuf::from))
}

/// Check the selected services: resolve each tag in its registry (all
/// stacks' images in one concurrent batch) and compare with what runs.
pub fn check(
    selections: &[Selection<'_>],
    registry: &Registry,
    lock_arg: Option<&Path>,
) -> Result<(Vec<ImageCheck>, BTreeMap<String, Resolved>)> {
    let mut images: BTreeSet<String> = BTreeSet::new();
    for sel in selections {
        for svc in &sel.services {
            if !svc.image_file && is_tag_reference(&svc.image) {
                images.insert(svc.image.clone());
            }
        }
    }
    let images: Vec<String> = images.into_iter().collect();
    // The engines are asked while the registries are: what runs does not
    // depend on what the tags point to (only which of an image's digests
    // is reported does, and that is chosen afterwards).
    let (resolved, running) = std::thread::scope(|s| {
        let engines = s.spawn(|| {
            selections
                .iter()
                .map(|sel| {
                    let containers: Vec<&str> =
                        sel.services.iter().map(|s| s.container.as_str()).collect();
                    RunningImages::query(&engine_of(sel.stack), &containers)
                })
                .collect::<Result<Vec<_>>>()
        });
        let resolved = registry.resolve_all(&images, &|_, _| {});
        let running = engines
            .join()
            .map_err(|_| anyhow::anyhow!("the thread asking the engines panicked"));
        (resolved, running)
    });
    let resolved = resolved?;
    let running = running??;
    let mut checks = Vec::new();
    for (sel, running) in selections.iter().zip(running) {
        let lock = match lock_path(sel.stack, lock_arg) {
            Some(p) => Lock::load(&p)?,
            None => None,
        };
        let pairs: Vec<(&str, &ServiceManifest)> = sel
            .names
            .iter()
            .map(String::as_str)
            .zip(sel.services.iter().copied())
            .collect();
        let pulled_as: Vec<String> = pairs
            .iter()
            .map(|(_, s)| registry.pulled_as(&s.image))
            .collect();
        let targets: Vec<Running<'_>> = pairs
            .iter()
            .zip(&pulled_as)
            .map(|((n, s), pulled_as)| Running {
                service: n,
                container: &s.container,
                image: pulled_as,
                prefer: resolved
                    .get(&s.image)
                    .map(|r| r.digest.as_str())
                    .into_iter()
                    .chain(lock.as_ref().and_then(|l| l.digest(&s.image)))
                    .collect(),
            })
            .collect();
        let running = running.digests(&targets);
        for ((name, svc), pulled_as) in pairs.into_iter().zip(pulled_as) {
            let available = resolved.get(&svc.image).map(|r| r.digest.clone());
            let locked = lock
                .as_ref()
                .and_then(|l| l.digest(&svc.image))
                .map(str::to_owned);
            let mut c = ImageCheck {
                service: name.to_owned(),
                unit: svc.unit.clone(),
                container: svc.container.clone(),
                image: svc.image.clone(),
                pulled_as,
                running: running.get(name).cloned(),
                locked,
                available,
                state: CheckState::Current,
            };
            c.state = if svc.image_file {
                CheckState::ImageFile
            } else if !is_tag_reference(&svc.image) {
                CheckState::PinnedInSpec
            } else if c.available.as_deref() == c.current() {
                CheckState::Current
            } else {
                CheckState::UpdateAvailable
            };
            checks.push(c);
        }
    }
    Ok((checks, resolved))
}

/// What happened to one service in an update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub service: String,
    pub unit: String,
    pub image: String,
    pub from: Option<String>,
    pub to: String,
    pub result: UpdateResult,
    /// Why, when it did not end updated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum UpdateResult {
    /// Runs the new digest, healthy.
    Updated,
    /// The new digest is recorded; the service was not running, so it
    /// starts with it next time.
    Recorded,
    /// The new digest did not turn healthy; the previous one runs again,
    /// healthy.
    RolledBack,
    /// The new digest did not turn healthy and the previous one did not
    /// either.
    RollbackFailed,
}

/// How an update records digests, and how it puts one back.
enum Mode {
    /// The units run the lock's `repo@sha256`: write it, `daemon-reload`.
    Lock { path: PathBuf, before: Lock },
    /// The units run the tag: point the local tag at the digest.
    Tag,
}

pub struct UpdateOptions<'a> {
    pub lock: Option<&'a Path>,
    pub timeout: Duration,
    /// Called with each pull's progress: (image, line).
    pub progress: &'a (dyn Fn(&str, &str) + Sync),
}

/// Update one stack's selected services whose check says an update is
/// available. Returns one outcome per such service.
// Over ~100 lines on purpose: one transaction (pull, record, restart,
// roll back) whose steps share the mode and the failed set; in one piece
// the reader sees that nothing changes before every pull has succeeded and
// that each record step has its rollback.
pub async fn apply(
    sd: &Systemd,
    sel: &Selection<'_>,
    checks: &[ImageCheck],
    resolved: &BTreeMap<String, Resolved>,
    opts: &UpdateOptions<'_>,
    reload_manifest: &dyn Fn() -> Result<Manifest>,
) -> Result<Vec<Outcome>> {
    let engine = engine_of(sel.stack);
    let mine: Vec<&ImageCheck> = checks
        .iter()
        .filter(|c| sel.names.contains(&c.service))
        .collect();
    let mode = match lock_path(sel.stack, opts.lock) {
        Some(path) => {
            refuse_store_lock(&path)?;
            let before = Lock::load(&path)?.unwrap_or_default();
            Mode::Lock { path, before }
        }
        None => Mode::Tag,
    };
    let changed: Vec<&ImageCheck> = mine
        .iter()
        .copied()
        .filter(|c| c.state == CheckState::UpdateAvailable)
        .collect();
    let lock_stale = matches!(&mode, Mode::Lock { .. })
        && mine
            .iter()
            .any(|c| c.state == CheckState::Current && c.locked != c.available);
    if changed.is_empty() && !lock_stale {
        return Ok(Vec::new());
    }
    // Pull first, by digest: nothing is changed before every image is here.
    let mut pulled = BTreeSet::new();
    for c in &changed {
        let Some(digest) = &c.available else { continue };
        let reference = pinned_reference(&c.image, digest);
        if pulled.insert(reference.clone()) {
            engine
                .pull(&reference)
                .run_lines(&mut |line| (opts.progress)(&c.image, line))
                .with_context(|| format!("pulling {reference} for {}", c.service))?;
        }
    }
    // Record the new digests.
    match &mode {
        Mode::Lock { path, before } => {
            let fresh: BTreeMap<String, Resolved> = mine
                .iter()
                .filter(|c| c.available.is_some())
                .filter_map(|c| Some((c.image.clone(), resolved.get(&c.image)?.clone())))
                .collect();
            let uses = stack_uses(sel.stack);
            before.merge(&uses, &fresh).save(path)?;
            sd.daemon_reload().await?;
        }
        Mode::Tag => {
            for c in &changed {
                if let Some(d) = &c.available {
                    engine.tag(&pinned_reference(&c.image, d), &c.image).run()?;
                }
            }
        }
    }
    if let Mode::Lock { path, .. } = &mode
        && !units_follow_lock(&reload_manifest()?, sel, path, &changed)
    {
        bail!(
            "wrote {} but the units do not run what it pins (they are not rendered from it: a \
             NixOS configuration or a `render --out` tree); rebuild them from the new lock \
             (nixos-rebuild switch, or render again and `nixarr-units reload`)",
            path.display()
        );
    }
    let restart: Vec<&ImageCheck> = changed
        .iter()
        .copied()
        .filter(|c| c.running.is_some())
        .collect();
    let mut outcomes: Vec<Outcome> = changed
        .iter()
        .filter(|c| c.running.is_none())
        .map(|c| outcome(c, UpdateResult::Recorded, None))
        .collect();
    let failed =
        restart_and_verify(sd, &engine, &restart, opts.timeout, |c| c.available.clone()).await?;
    for c in &restart {
        if !failed.contains_key(&c.service) {
            outcomes.push(outcome(c, UpdateResult::Updated, None));
        }
    }
    if failed.is_empty() {
        return Ok(outcomes);
    }
    // Roll back: the previous digest of every service that failed.
    let back: Vec<&ImageCheck> = restart
        .iter()
        .copied()
        .filter(|c| failed.contains_key(&c.service))
        .collect();
    match &mode {
        Mode::Lock { path, before } => {
            let mut lock = Lock::load(path)?.unwrap_or_default();
            for c in &back {
                let Some(pin) = lock.images.get_mut(&c.image) else {
                    continue;
                };
                match (before.images.get(&c.image), &c.running) {
                    (Some(old), _) if Some(&old.digest) == c.running.as_ref() => {
                        *pin = crate::images::lock::Pin {
                            services: pin.services.clone(),
                            ..old.clone()
                        };
                    }
                    (_, Some(running)) => pin.digest = running.clone(),
                    (_, None) => {}
                }
            }
            lock.save(path)?;
            sd.daemon_reload().await?;
        }
        Mode::Tag => {
            for c in &back {
                if let Some(d) = &c.running {
                    engine.tag(&pinned_reference(&c.image, d), &c.image).run()?;
                }
            }
        }
    }
    let still = restart_and_verify(sd, &engine, &back, opts.timeout, |c| c.running.clone()).await?;
    for c in back {
        let why = failed.get(&c.service).cloned();
        match still.get(&c.service) {
            None => outcomes.push(outcome(c, UpdateResult::RolledBack, why)),
            Some(again) => outcomes.push(outcome(
                c,
                UpdateResult::RollbackFailed,
                Some(format!(
                    "{}; after the rollback: {again}",
                    why.unwrap_or_default()
                )),
            )),
        }
    }
    outcomes.sort_by(|a, b| a.service.cmp(&b.service));
    Ok(outcomes)
}

fn outcome(c: &ImageCheck, result: UpdateResult, detail: Option<String>) -> Outcome {
    Outcome {
        service: c.service.clone(),
        unit: c.unit.clone(),
        image: c.image.clone(),
        from: c.current().map(str::to_owned),
        to: c.available.clone().unwrap_or_default(),
        result,
        detail,
    }
}

/// Every service of the stack that runs an image by tag, with its image:
/// what the lock must hold entries for.
pub fn stack_uses(stack: &StackManifest) -> BTreeMap<String, String> {
    stack
        .services
        .iter()
        .filter(|(_, s)| !s.image_file && is_tag_reference(&s.image))
        .map(|(n, s)| (n.clone(), s.image.clone()))
        .collect()
}

/// A lock in the Nix store is the NixOS configuration's: it changes with
/// the configuration, not here.
fn refuse_store_lock(path: &Path) -> Result<()> {
    if path.starts_with("/nix/store") {
        return Err(crate::error::UsageError(format!(
            "the image lock {} is in the Nix store (services.nixarr-units.imageLock): update \
             the file your configuration names with `nixarr-units update --all --lock \
             ./images.lock.json` in its directory, then nixos-rebuild switch",
            path.display()
        ))
        .into());
    }
    Ok(())
}

/// Whether the units, after `daemon-reload`, run what the lock at `path`
/// pins for the changed services.
fn units_follow_lock(
    manifest: &Manifest,
    sel: &Selection<'_>,
    path: &Path,
    changed: &[&ImageCheck],
) -> bool {
    let Some(stack) = manifest
        .stacks
        .iter()
        .find(|s| s.prefix == sel.stack.prefix)
    else {
        return false;
    };
    stack.image_lock.as_deref().map(Path::new) == Some(path)
        && changed.iter().all(|c| {
            stack
                .services
                .get(&c.service)
                .and_then(|s| s.image_digest.as_ref())
                == c.available.as_ref()
        })
}

/// Restart the units of `checks` in one batch and check each runs the
/// digest `expect` gives; returns why each one that did not, by service.
async fn restart_and_verify(
    sd: &Systemd,
    engine: &Engine,
    checks: &[&ImageCheck],
    timeout: Duration,
    expect: impl Fn(&ImageCheck) -> Option<String>,
) -> Result<BTreeMap<String, String>> {
    let mut failed = BTreeMap::new();
    if checks.is_empty() {
        return Ok(failed);
    }
    let units: Vec<String> = checks.iter().map(|c| c.unit.clone()).collect();
    let jobs = sd
        .run_jobs(crate::systemd::Verb::Restart, &units, timeout)
        .await?;
    for c in checks {
        let job = jobs.iter().find(|j| j.unit == c.unit);
        let done = job.is_some_and(|j| j.result == crate::systemd::JobResult::Done);
        if !done {
            let result = job.map_or("unknown".to_owned(), |j| j.result.to_string());
            failed.insert(
                c.service.clone(),
                format!("{} did not turn healthy (restart {result})", c.unit),
            );
        }
    }
    // What runs now, for the ones that came up.
    let up: Vec<&ImageCheck> = checks
        .iter()
        .copied()
        .filter(|c| !failed.contains_key(&c.service))
        .collect();
    if up.is_empty() {
        return Ok(failed);
    }
    let wants: Vec<Option<String>> = up.iter().map(|c| expect(c)).collect();
    let targets: Vec<Running<'_>> = up
        .iter()
        .zip(&wants)
        .map(|(c, want)| Running {
            service: &c.service,
            container: &c.container,
            image: &c.pulled_as,
            prefer: want.as_deref().into_iter().collect(),
        })
        .collect();
    let running = running_digests(engine, &targets)?;
    for (c, want) in up.into_iter().zip(wants) {
        if running.get(&c.service) != want.as_ref() {
            failed.insert(
                c.service.clone(),
                format!(
                    "{} runs {} instead of {}",
                    c.unit,
                    running.get(&c.service).map_or("nothing", String::as_str),
                    want.as_deref().unwrap_or("?")
                ),
            );
        }
    }
    Ok(failed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn manifest(lock: Option<&str>, digest: Option<&str>) -> Manifest {
        let svc = |name: &str, image: &str, file: bool| {
            let mut v = serde_json::json!({
                "unit": format!("x-{name}.service"), "container": format!("x-{name}"),
                "app": null, "description": "", "image": image, "ports": [], "volumes": [],
                "configDir": null, "dependsOn": [], "vpn": false, "health": null,
                "configHash": "h", "uid": 0, "gid": 0, "migration": null
            });
            if file {
                v["imageFile"] = true.into();
            }
            if let (Some(d), "a") = (digest, name) {
                v["imageDigest"] = d.into();
            }
            v
        };
        let mut stack = serde_json::json!({
            "prefix": "x", "backend": "podman", "engine": "/usr/bin/podman",
            "target": "x.target", "network": "x", "networkUnit": "x-network.service",
            "services": {
                "a": svc("a", "r/a:1", false),
                "b": svc("b", "r/b@sha256:1111111111111111111111111111111111111111111111111111111111111111", false),
                "c": svc("c", "r/c:1", true),
            }
        });
        if let Some(l) = lock {
            stack["imageLock"] = l.into();
        }
        serde_json::from_value(serde_json::json!({
            "version": 1, "generator": "t", "stacks": [stack]
        }))
        .unwrap()
    }

    fn check(service: &str, available: &str) -> ImageCheck {
        ImageCheck {
            service: service.to_owned(),
            unit: format!("x-{service}.service"),
            container: format!("x-{service}"),
            image: format!("r/{service}:1"),
            pulled_as: format!("r/{service}:1"),
            running: Some("sha256:old".to_owned()),
            locked: None,
            available: Some(available.to_owned()),
            state: CheckState::UpdateAvailable,
        }
    }

    // Real `podman image inspect` / `container inspect` output of podman
    // 4.3.1 (fields trimmed): the fake app imported (`podman import`,
    // stored under the digest of the manifest podman wrote, 1eab…), pushed
    // to a registry (skopeo compresses the layer: manifest f4a5…) and
    // pulled back by tag. The pull found the same image (same config, so
    // same ID) and added f4a5… to it: the image has both digests in the
    // tag's repository, RepoDigests sorted by text, Digest and the
    // container's ImageDigest the import's, which no registry has.
    const PODMAN_IMPORTED_THEN_PULLED: &str = r#"[{"Id": "3cf3e8645e65c3c22ee8560e65ef8560acc2dd8e7af00201b89505df2ff4100d", "Digest": "sha256:1eabbbc249bff8e3cc7bcdc3b56d97366a8c50e3c8d5735fb0a2ed088c187aff", "RepoTags": ["127.0.0.1:48485/e2e/app:latest", "localhost/x:v1"], "RepoDigests": ["127.0.0.1:48485/e2e/app@sha256:1eabbbc249bff8e3cc7bcdc3b56d97366a8c50e3c8d5735fb0a2ed088c187aff", "127.0.0.1:48485/e2e/app@sha256:f4a5e6dc4d5ede14b5b1bc7293025229078ff3c4f38ac83725f47a50d313b989", "localhost/x@sha256:1eabbbc249bff8e3cc7bcdc3b56d97366a8c50e3c8d5735fb0a2ed088c187aff", "localhost/x@sha256:f4a5e6dc4d5ede14b5b1bc7293025229078ff3c4f38ac83725f47a50d313b989"], "Created": "2026-12-01T14:51:05.295166617Z", "Architecture": "amd64", "Os": "linux", "ManifestType": "application/vnd.oci.image.manifest.v1+json", "NamesHistory": ["localhost/x:v1", "127.0.0.1:48485/e2e/app:latest"]}]"#;
    const PODMAN_CONTAINER_FROM_TAG: &str = r#"[{"Id": "c6e4bd375bf5e73e93db90aa21002fd61ad5589f106139e04ac520e8409a58f3", "Name": "c1", "Image": "3cf3e8645e65c3c22ee8560e65ef8560acc2dd8e7af00201b89505df2ff4100d", "ImageDigest": "sha256:1eabbbc249bff8e3cc7bcdc3b56d97366a8c50e3c8d5735fb0a2ed088c187aff", "ImageName": "127.0.0.1:48485/e2e/app:latest"}]"#;
    // podman 4.3.1 pulling an OCI index by tag: the image has the index's
    // digest (6fb7…, what the registry gives for the tag and the lock
    // holds) and its instance's (f4a5…); Digest and ImageDigest are the
    // index's.
    const PODMAN_INDEX_PULLED: &str = r#"[{"Id": "3cf3e8645e65c3c22ee8560e65ef8560acc2dd8e7af00201b89505df2ff4100d", "Digest": "sha256:6fb741d6dca95344a5a9d9aeec8b38283281a6c424f7b78812076963f1d48eda", "RepoTags": ["127.0.0.1:48485/e2e/multi:latest"], "RepoDigests": ["127.0.0.1:48485/e2e/multi@sha256:6fb741d6dca95344a5a9d9aeec8b38283281a6c424f7b78812076963f1d48eda", "127.0.0.1:48485/e2e/multi@sha256:f4a5e6dc4d5ede14b5b1bc7293025229078ff3c4f38ac83725f47a50d313b989"]}]"#;
    const PODMAN_CONTAINER_FROM_INDEX_TAG: &str = r#"[{"Name": "c2", "Image": "3cf3e8645e65c3c22ee8560e65ef8560acc2dd8e7af00201b89505df2ff4100d", "ImageDigest": "sha256:6fb741d6dca95344a5a9d9aeec8b38283281a6c424f7b78812076963f1d48eda", "ImageName": "127.0.0.1:48485/e2e/multi:latest"}]"#;
    // Docker 28 (`docker inspect`): the image has the digest it was pulled
    // by, per repository; the container names its reference in Config.
    const DOCKER_IMAGE: &str = r#"[{"Id": "sha256:3cf3e8645e65c3c22ee8560e65ef8560acc2dd8e7af00201b89505df2ff4100d", "RepoTags": ["127.0.0.1:48485/e2e/app:latest"], "RepoDigests": ["127.0.0.1:48485/e2e/app@sha256:f4a5e6dc4d5ede14b5b1bc7293025229078ff3c4f38ac83725f47a50d313b989"], "Config": {}}]"#;
    const DOCKER_CONTAINER: &str = r#"[{"Id": "9f1c", "Name": "/c1", "Image": "sha256:3cf3e8645e65c3c22ee8560e65ef8560acc2dd8e7af00201b89505df2ff4100d", "Config": {"Image": "127.0.0.1:48485/e2e/app:latest", "Env": []}}]"#;

    const IMPORTED: &str =
        "sha256:1eabbbc249bff8e3cc7bcdc3b56d97366a8c50e3c8d5735fb0a2ed088c187aff";
    const PUSHED: &str = "sha256:f4a5e6dc4d5ede14b5b1bc7293025229078ff3c4f38ac83725f47a50d313b989";
    const INDEX: &str = "sha256:6fb741d6dca95344a5a9d9aeec8b38283281a6c424f7b78812076963f1d48eda";
    const NEWER: &str = "sha256:10177b1d3e8f088cf788d9e5e30ab52a7e5507b478d31369441a7c6796d2d6ab";

    fn running_of(containers: &str, images: &str, tag: &str, prefer: &[&str]) -> Option<String> {
        let c = parse_container_images(containers).unwrap();
        let i = parse_image_inspect(images).unwrap();
        container_digest(&c[0], i.first(), tag, prefer)
    }

    #[test]
    fn a_tag_moved_on_reports_the_locked_digest_not_another_of_the_image() {
        // The failure of the full run: v2 pushed, so the registry's digest
        // is not the image's; the check reported the import's digest (the
        // first in text order) instead of the lock's.
        let tag = "127.0.0.1:48485/e2e/app:latest";
        let (c, i) = (PODMAN_CONTAINER_FROM_TAG, PODMAN_IMPORTED_THEN_PULLED);
        assert_eq!(
            running_of(c, i, tag, &[NEWER, PUSHED]).as_deref(),
            Some(PUSHED)
        );
        assert_ne!(
            running_of(c, i, tag, &[NEWER, PUSHED]).as_deref(),
            Some(IMPORTED)
        );
        // Current: the registry's digest, the image has it.
        assert_eq!(running_of(c, i, tag, &[PUSHED]).as_deref(), Some(PUSHED));
        // Docker records only the digest it pulled.
        assert_eq!(
            running_of(DOCKER_CONTAINER, DOCKER_IMAGE, tag, &[NEWER]).as_deref(),
            Some(PUSHED)
        );
    }

    #[test]
    fn a_short_name_matches_the_full_name_podman_records() {
        // podman stores `app:latest` (resolved through an alias or a
        // search registry to Docker Hub) under docker.io/library/app; the
        // spec and the unit say `app`.
        let images =
            PODMAN_IMPORTED_THEN_PULLED.replace("127.0.0.1:48485/e2e/app", "docker.io/library/app");
        let c =
            PODMAN_CONTAINER_FROM_TAG.replace("127.0.0.1:48485/e2e/app", "docker.io/library/app");
        assert_eq!(
            running_of(&c, &images, "app:latest", &[NEWER, PUSHED]).as_deref(),
            Some(PUSHED)
        );
        assert!(same_repository("app", "docker.io/library/app"));
        assert!(same_repository("index.docker.io/team/app", "team/app"));
        assert!(!same_repository("app", "quay.io/app"));
        assert!(!same_repository("localhost/x", "docker.io/library/x"));
    }

    #[test]
    fn with_nothing_preferred_an_index_pull_reports_the_index_digest() {
        // No lock and the tag moved on: podman's ImageDigest, the digest
        // the tag gave at the pull (the index's, not its instance's).
        let tag = "127.0.0.1:48485/e2e/multi:latest";
        assert_eq!(
            running_of(
                PODMAN_CONTAINER_FROM_INDEX_TAG,
                PODMAN_INDEX_PULLED,
                tag,
                &[NEWER]
            )
            .as_deref(),
            Some(INDEX)
        );
        // A container created from `repo@sha256:…` runs that digest.
        let pinned = PODMAN_CONTAINER_FROM_INDEX_TAG
            .replace("e2e/multi:latest\"", &format!("e2e/multi@{PUSHED}\""));
        assert_eq!(
            running_of(&pinned, PODMAN_INDEX_PULLED, tag, &[INDEX]).as_deref(),
            Some(PUSHED)
        );
    }

    #[test]
    fn the_lock_holds_services_run_by_tag_only() {
        let m = manifest(None, None);
        let uses = stack_uses(&m.stacks[0]);
        assert_eq!(uses.keys().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn selection_groups_by_stack_and_takes_unit_names() {
        let m = manifest(None, None);
        let sel = select(
            &m,
            &["x-a.service".to_owned(), "c".to_owned(), "a".to_owned()],
        )
        .unwrap();
        assert_eq!(sel.len(), 1);
        assert_eq!(sel[0].names, ["a", "c"]);
        assert_eq!(select(&m, &[]).unwrap()[0].names, ["a", "b", "c"]);
        assert!(select(&m, &["nope".to_owned()]).is_err());
    }

    #[test]
    fn a_lock_in_the_store_is_the_configurations() {
        let e = refuse_store_lock(Path::new("/nix/store/abc-images.lock.json")).unwrap_err();
        assert!(e.is::<crate::error::UsageError>());
        assert!(e.to_string().contains("nixos-rebuild switch"), "{e}");
        assert!(refuse_store_lock(Path::new("/etc/nixarr-units/images.lock.json")).is_ok());
    }

    #[test]
    fn units_follow_the_lock_only_when_rendered_from_it_with_the_new_digest() {
        let m = manifest(Some("/etc/l.json"), Some("sha256:new"));
        let sel = &select(&m, &[]).unwrap()[0];
        let c = check("a", "sha256:new");
        assert!(units_follow_lock(&m, sel, Path::new("/etc/l.json"), &[&c]));
        // Another file than the units read, or the units not re-rendered.
        assert!(!units_follow_lock(&m, sel, Path::new("/tmp/l.json"), &[&c]));
        let stale = manifest(Some("/etc/l.json"), Some("sha256:old"));
        assert!(!units_follow_lock(
            &stale,
            sel,
            Path::new("/etc/l.json"),
            &[&c]
        ));
    }

    #[test]
    fn a_relative_lock_is_taken_from_the_working_directory() {
        let m = manifest(Some("/etc/l.json"), None);
        assert_eq!(
            lock_path(&m.stacks[0], None).unwrap(),
            Path::new("/etc/l.json")
        );
        let rel = lock_path(&m.stacks[0], Some(Path::new("pins.json"))).unwrap();
        assert!(rel.is_absolute() && rel.ends_with("pins.json"));
    }
}
