//! The one pipeline from a spec file to rendered units: read → parse →
//! ask the engine what the spec leaves out → resolve → render. Used by
//! `render`, `validate` and the generator; it writes and prints nothing:
//! notes and warnings come back as data for the caller to show (stderr for
//! the CLI, the journal for the generator).

use std::path::Path;

use anyhow::{Context, Result};

use crate::error::{SpecError, UsageError};
use crate::generator::detect_engine;
use crate::model::Stack;
use crate::render::{self, Options, Rendered};
use crate::resolve::{exposure_warnings, resolve};
use crate::spec;

/// A rendered spec and what the user should hear about it.
#[derive(Debug)]
pub struct Loaded {
    pub stack: Stack,
    pub rendered: Rendered,
    /// Assumptions made for the user (e.g. the engine version), each
    /// starting with the spec's path.
    pub notes: Vec<String>,
    /// Risks in the spec (e.g. a port open to the LAN), each starting with
    /// the spec's path.
    pub warnings: Vec<String>,
}

/// Where the units call the binary, and whether they name their spec file.
#[derive(Debug, Clone)]
pub struct LoadOptions<'a> {
    /// The nixarr-units the units call for helper steps.
    pub self_exe: &'a str,
    /// Write the spec's path into the units (the generator does; a package
    /// rendered for NixOS must not depend on where its spec was).
    pub record_source: bool,
}

/// A spec file's name as errors cite it, and its text; a missing file is
/// a usage error.
pub fn read(path: &Path) -> Result<(String, String)> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(t) => Ok((origin, t)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory
            ) =>
        {
            Err(UsageError(format!(
                "cannot read the spec {origin}: {e}; check the path given to --spec"
            ))
            .into())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read the spec {origin}")),
    }
}

/// Parse, validate and render one spec file, writing nothing. Where the
/// spec does not say which engine version the units are for, the installed
/// engine is asked; when there is none to ask, a note says what was assumed.
pub fn load(path: &Path, opts: &LoadOptions<'_>) -> Result<Loaded> {
    let (origin, text) = read(path)?;
    let mut spec = spec::parse(&text, &origin)?;
    let notes = detect_engine(&mut spec)
        .map(|note| format!("{origin}: {note}"))
        .into_iter()
        .collect();
    let mut stack = resolve(&spec, &origin)?;
    crate::images::lock::apply(path, spec.image_lock.as_deref(), &mut stack)?;
    let warnings = exposure_warnings(&stack)
        .into_iter()
        .map(|w| format!("{origin}: {w}"))
        .collect();
    let rendered = render::render(
        &stack,
        &Options {
            self_exe: opts.self_exe.to_owned(),
            source_path: opts.record_source.then(|| origin.clone()),
        },
    )
    .map_err(|e| SpecError::at(&origin, "services", e.to_string()))?;
    Ok(Loaded {
        stack,
        rendered,
        notes,
        warnings,
    })
}

/// The path of this binary, for the units' helper steps, unless `given`.
pub fn self_exe(given: Option<String>) -> Result<String> {
    if let Some(p) = given {
        return Ok(p);
    }
    let exe = std::env::current_exe().context("cannot find the path of this binary")?;
    let exe = exe.to_str().with_context(|| {
        format!(
            "the path of this binary ({}) is not UTF-8; pass --self-exe",
            exe.display()
        )
    })?;
    Ok(exe.to_owned())
}
