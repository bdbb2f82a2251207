//! `nixarr-units pull`: pull the images services run (the locked digest
//! where the lock pins one, else the tag), a few at a time, with a progress
//! bar per image on a terminal and a line per image otherwise.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

use super::{Context, ExitStatus, Format, Output};
use crate::engine::Engine;
use crate::images::lock::pinned_reference;
use crate::images::update::{engine_of, select};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    services: super::Services,
    /// Images pulled at a time.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=32))]
    jobs: u16,
}

/// One image's pull.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Pulled {
    /// What was pulled: `repo@sha256:…` for a locked image, else the tag.
    reference: String,
    services: Vec<String>,
    /// The digest the engine has for it now.
    digest: Option<String>,
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    images: Vec<Pulled>,
    /// Services loaded from an image file (nothing to pull).
    skipped: Vec<String>,
}

impl Output for Report {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        for p in &self.images {
            match (&p.error, &p.digest) {
                (Some(e), _) => writeln!(out, "{}: failed: {e}", p.reference)?,
                (None, d) => writeln!(
                    out,
                    "{}: pulled {} in {:.1}s ({})",
                    p.reference,
                    d.as_deref().unwrap_or("(no digest)"),
                    p.seconds,
                    p.services.join(", ")
                )?,
            }
        }
        for s in &self.skipped {
            writeln!(out, "{s}: image file, nothing to pull")?;
        }
        Ok(())
    }
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        let (_, manifest) = ctx.load_manifest()?;
        let names = self.services.names();
        // Reference → (engine, services).
        let mut wanted: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        let mut skipped = Vec::new();
        for sel in select(&manifest, &names)? {
            for (name, svc) in sel.names.iter().zip(&sel.services) {
                if svc.image_file {
                    skipped.push(name.clone());
                    continue;
                }
                let reference = match &svc.image_digest {
                    Some(d) => pinned_reference(&svc.image, d),
                    None => svc.image.clone(),
                };
                wanted
                    .entry((sel.stack.engine.clone(), reference))
                    .or_default()
                    .push(name.clone());
            }
        }
        let engines: BTreeMap<String, Engine> = manifest
            .stacks
            .iter()
            .map(|s| (s.engine.clone(), engine_of(s)))
            .collect();
        let bars = (ctx.printer.format() == Format::Text && io::stderr().is_terminal())
            .then(MultiProgress::new);
        let queue = Mutex::new(wanted.into_iter());
        let done = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..self.jobs {
                s.spawn(|| {
                    while let Some(((engine, reference), services)) =
                        queue.lock().ok().and_then(|mut q| q.next())
                    {
                        let Some(engine) = engines.get(&engine) else {
                            continue;
                        };
                        let p = pull_one(engine, &reference, services, bars.as_ref());
                        if let Ok(mut d) = done.lock() {
                            d.push(p);
                        }
                    }
                });
            }
        });
        let mut images = done.into_inner().unwrap_or_default();
        images.sort_by(|a, b| a.reference.cmp(&b.reference));
        let ok = images.iter().all(|p| p.error.is_none());
        ctx.printer.print(&Report { images, skipped })?;
        Ok(ExitStatus::ok_if(ok))
    }
}

/// Pull one reference, its bar showing the engine's latest line.
fn pull_one(
    engine: &Engine,
    reference: &str,
    services: Vec<String>,
    bars: Option<&MultiProgress>,
) -> Pulled {
    let start = Instant::now();
    let bar = bars.map(|m| {
        let b = m.add(ProgressBar::new_spinner());
        b.set_style(
            ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b.set_prefix(reference.to_owned());
        b.enable_steady_tick(Duration::from_millis(120));
        b
    });
    let result = engine.pull(reference).run_lines(&mut |line| {
        if let Some(b) = &bar {
            b.set_message(line.to_owned());
        }
    });
    let digest = engine.image(reference).ok().flatten().and_then(|i| {
        i.digest.clone().or_else(|| {
            i.repo_digest(Some(crate::images::lock::repository(reference)))
                .map(str::to_owned)
        })
    });
    if let Some(b) = &bar {
        match &result {
            Ok(()) => b.finish_with_message(format!("done {}", digest.as_deref().unwrap_or(""))),
            Err(e) => b.abandon_with_message(format!("failed: {e}")),
        }
    }
    Pulled {
        reference: reference.to_owned(),
        services,
        digest,
        seconds: start.elapsed().as_secs_f64(),
        error: result.err().map(|e| format!("{e:#}")),
    }
}
