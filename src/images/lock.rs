//! `images.lock.json`: for each image reference a stack runs by tag, the
//! digest it resolved to, the platform and when. A unit whose image has an
//! entry runs `repo@sha256:…` instead of the tag (the tag kept in the label
//! [`LABEL_IMAGE_TAG`]), so the same lock gives the same images on every
//! render, and rolling a NixOS generation back rolls its images back.
//!
//! The file is keyed by image reference, as the spec writes it, so two
//! services on one image share an entry. [`Lock::merge`] keeps it in step
//! with the stack: images no service uses any more are dropped, new ones
//! added, the others kept unless freshly resolved.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::SpecError;

pub const LOCK_VERSION: u64 = 1;
/// The lock's file name beside the spec, when the spec names no other.
pub const LOCK_FILE: &str = "images.lock.json";
/// The label that keeps the tag of a container that runs a pinned digest.
pub const LABEL_IMAGE_TAG: &str = "io.nixarr.image.tag";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lock {
    pub version: u64,
    /// By image reference as the spec writes it (`lscr.io/linuxserver/sonarr:latest`).
    pub images: BTreeMap<String, Pin>,
}

impl Default for Lock {
    fn default() -> Self {
        Lock {
            version: LOCK_VERSION,
            images: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pin {
    /// `sha256:` and 64 hex digits: the digest of the manifest the tag
    /// pointed to (a manifest list's, for a multi-platform image).
    pub digest: String,
    /// The platform it was resolved for (`linux/amd64`).
    pub platform: String,
    /// When it was resolved (RFC 3339, UTC).
    pub resolved: String,
    /// The services that run it (sorted).
    pub services: Vec<String>,
}

/// A digest as it is resolved: what [`Lock::merge`] records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub digest: String,
    pub platform: String,
    pub resolved: String,
}

/// Whether `image` names its image by tag (or by nothing, meaning
/// `latest`) rather than by digest: only those are locked.
pub fn is_tag_reference(image: &str) -> bool {
    !image.contains('@')
}

/// `image` without its tag: the repository a digest is appended to, as the
/// spec spells it (`localhost:5000/app:v1` → `localhost:5000/app`).
pub fn repository(image: &str) -> &str {
    let name = image.split('@').next().unwrap_or(image);
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].find(':') {
        Some(colon) => &name[..last_slash + colon],
        None => name,
    }
}

/// `repo@digest`: what a pinned unit runs.
pub fn pinned_reference(image: &str, digest: &str) -> String {
    format!("{}@{digest}", repository(image))
}

/// A sha256 digest as the distribution spec writes it, or why not.
pub fn check_digest(digest: &str) -> Result<(), String> {
    let parsed = oci_spec::image::Digest::from_str(digest)
        .map_err(|e| format!("`{digest}` is not a digest ({e})"))?;
    if parsed.algorithm() != &oci_spec::image::DigestAlgorithm::Sha256
        || parsed.digest().chars().any(|c| c.is_ascii_uppercase())
    {
        return Err(format!(
            "`{digest}` is not a sha256 digest; write `sha256:` and 64 lowercase hex digits"
        ));
    }
    Ok(())
}

impl Lock {
    /// Parse a lock's text; errors name `origin`, the JSON path and the fix.
    pub fn parse(text: &str, origin: &str) -> Result<Lock, SpecError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let lock: Lock = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return SpecError::Syntax {
                    origin: origin.to_owned(),
                    line: inner.line(),
                    column: inner.column(),
                    message: inner.to_string(),
                };
            }
            let path = if path == "." {
                "(top level)".to_owned()
            } else {
                path
            };
            SpecError::at(
                origin,
                &path,
                format!(
                    "{inner}; fix the entry, or delete the lock file and run `nixarr-units update \
                     --lock {origin}` to write a new one"
                ),
            )
        })?;
        if lock.version != LOCK_VERSION {
            return Err(SpecError::at(
                origin,
                "version",
                format!(
                    "lock version {} is not supported (this build reads version {LOCK_VERSION}); \
                     write it again with this nixarr-units (`update --lock {origin}`)",
                    lock.version
                ),
            ));
        }
        for (image, pin) in &lock.images {
            if let Err(why) = check_digest(&pin.digest) {
                return Err(SpecError::at(
                    origin,
                    &format!("images.\"{image}\".digest"),
                    why,
                ));
            }
            if !is_tag_reference(image) {
                return Err(SpecError::at(
                    origin,
                    &format!("images.\"{image}\""),
                    "is a digest reference, which needs no lock entry; remove the entry",
                ));
            }
        }
        Ok(lock)
    }

    /// Read the lock at `path`; `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<Lock>> {
        let origin = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(Lock::parse(&text, &origin)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read the image lock {origin}")),
        }
    }

    /// Pretty JSON with a trailing newline; the same lock, the same bytes.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Write the lock atomically (a reader sees the old or the new one).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::output::write_atomic(path, self.to_json().as_bytes(), 0o644)
            .with_context(|| format!("writing the image lock {}", path.display()))
    }

    /// The digest the lock pins `image` to.
    pub fn digest(&self, image: &str) -> Option<&str> {
        self.images.get(image).map(|p| p.digest.as_str())
    }

    /// The lock for a stack whose services run `uses` (service → image, by
    /// tag; image files and digest references left out): `fresh` digests
    /// replace or add entries, images no service uses any more are
    /// dropped, the others are kept as they were. Each entry lists the
    /// services that run it.
    pub fn merge(
        &self,
        uses: &BTreeMap<String, String>,
        fresh: &BTreeMap<String, Resolved>,
    ) -> Lock {
        let mut by_image: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (svc, image) in uses {
            by_image.entry(image).or_default().insert(svc);
        }
        let images = by_image
            .into_iter()
            .filter_map(|(image, services)| {
                let services = services.into_iter().map(str::to_owned).collect();
                let pin = match (fresh.get(image), self.images.get(image)) {
                    (Some(r), _) => Pin {
                        digest: r.digest.clone(),
                        platform: r.platform.clone(),
                        resolved: r.resolved.clone(),
                        services,
                    },
                    (None, Some(old)) => Pin {
                        services,
                        ..old.clone()
                    },
                    (None, None) => return None,
                };
                Some((image.to_owned(), pin))
            })
            .collect();
        Lock {
            version: LOCK_VERSION,
            images,
        }
    }
}

/// Where a spec's lock is: the spec's `imageLock`, else [`LOCK_FILE`]
/// beside the spec.
pub fn path_for_spec(spec_path: &Path, image_lock: Option<&str>) -> PathBuf {
    match image_lock {
        Some(p) => PathBuf::from(p),
        None => spec_path.parent().unwrap_or(Path::new(".")).join(LOCK_FILE),
    }
}

/// Read the lock of the spec at `spec_path` (its `imageLock`, else
/// [`LOCK_FILE`] beside it) and pin the stack's units to it. A lock the
/// spec names but that does not exist yet pins nothing (`update` creates
/// it); the manifest still records where it goes.
pub fn apply(
    spec_path: &Path,
    image_lock: Option<&str>,
    stack: &mut crate::model::Stack,
) -> Result<()> {
    let path = path_for_spec(spec_path, image_lock);
    let lock = Lock::load(&path)?;
    if lock.is_none() && image_lock.is_none() {
        return Ok(());
    }
    let lock = lock.unwrap_or_default();
    let digests = stack
        .services
        .values()
        .filter(|s| s.image_file.is_none())
        .filter_map(|s| Some((s.name.clone(), lock.digest(&s.image)?.to_owned())))
        .collect();
    stack.lock = Some(crate::model::StackLock {
        path: path.display().to_string(),
        digests,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn resolved(d: &str) -> Resolved {
        Resolved {
            digest: d.to_owned(),
            platform: "linux/amd64".to_owned(),
            resolved: "2026-12-01T12:00:00Z".to_owned(),
        }
    }

    fn uses(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(s, i)| ((*s).to_owned(), (*i).to_owned()))
            .collect()
    }

    #[test]
    fn repository_strips_the_tag_only() {
        assert_eq!(repository("localhost:5000/app:v1"), "localhost:5000/app");
        assert_eq!(repository("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(
            repository("lscr.io/linuxserver/sonarr:latest"),
            "lscr.io/linuxserver/sonarr"
        );
        assert_eq!(repository("nginx"), "nginx");
        assert_eq!(repository("nginx:1.27"), "nginx");
        assert_eq!(
            pinned_reference("127.0.0.1:5000/a/b:v", D1),
            format!("127.0.0.1:5000/a/b@{D1}")
        );
    }

    #[test]
    fn round_trip_is_byte_identical() {
        let lock = Lock::default().merge(
            &uses(&[("sonarr", "x/sonarr:latest"), ("radarr", "x/radarr:latest")]),
            &[
                ("x/sonarr:latest".to_owned(), resolved(D1)),
                ("x/radarr:latest".to_owned(), resolved(D2)),
            ]
            .into(),
        );
        let text = lock.to_json();
        let again = Lock::parse(&text, "images.lock.json").unwrap();
        assert_eq!(again, lock);
        assert_eq!(again.to_json(), text);
        assert!(text.ends_with("}\n"));
        assert!(text.contains(r#""services": ["#), "{text}");
        assert_eq!(lock.digest("x/sonarr:latest"), Some(D1));
    }

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        assert_eq!(Lock::load(&path).unwrap(), None);
        let lock = Lock::default().merge(
            &uses(&[("a", "r/a:1")]),
            &[("r/a:1".to_owned(), resolved(D1))].into(),
        );
        lock.save(&path).unwrap();
        assert_eq!(Lock::load(&path).unwrap(), Some(lock));
    }

    #[test]
    fn merge_adds_new_drops_removed_keeps_the_rest() {
        let old = Lock::default().merge(
            &uses(&[("a", "r/a:1"), ("b", "r/b:1"), ("gone", "r/gone:1")]),
            &[
                ("r/a:1".to_owned(), resolved(D1)),
                ("r/b:1".to_owned(), resolved(D1)),
                ("r/gone:1".to_owned(), resolved(D1)),
            ]
            .into(),
        );
        // `gone` was removed from the stack, `new` added, `b` re-resolved,
        // `a2` shares a's image; `a` is not resolved this time.
        let new = old.merge(
            &uses(&[
                ("a", "r/a:1"),
                ("a2", "r/a:1"),
                ("b", "r/b:1"),
                ("new", "r/new:1"),
            ]),
            &[
                ("r/b:1".to_owned(), resolved(D2)),
                ("r/new:1".to_owned(), resolved(D2)),
            ]
            .into(),
        );
        assert_eq!(
            new.images.keys().collect::<Vec<_>>(),
            ["r/a:1", "r/b:1", "r/new:1"]
        );
        assert_eq!(new.images["r/a:1"].digest, D1);
        assert_eq!(new.images["r/a:1"].services, ["a", "a2"]);
        assert_eq!(new.images["r/b:1"].digest, D2);
        assert_eq!(new.images["r/new:1"].digest, D2);
        // An image used but neither locked nor resolved gets no entry.
        let none = Lock::default().merge(&uses(&[("c", "r/c:1")]), &BTreeMap::new());
        assert!(none.images.is_empty());
    }

    #[test]
    fn bad_locks_name_the_path_and_the_fix() {
        let e = Lock::parse(
            r#"{"version":1,"images":{"r/a:1":{"digest":"sha256:abc","platform":"linux/amd64","resolved":"x","services":["a"]}}}"#,
            "/etc/nixarr-units/images.lock.json",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(r#"images."r/a:1".digest"#), "{e}");
        assert!(e.contains("not a digest"), "{e}");
        let e = Lock::parse(r#"{"version":1,"images":{},"extra":1}"#, "l.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `extra`"), "{e}");
        assert!(e.contains("update --lock l.json"), "{e}");
        let e = Lock::parse(r#"{"version":2,"images":{}}"#, "l.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("version: lock version 2"), "{e}");
        let e = Lock::parse("{", "l.json").unwrap_err().to_string();
        assert!(e.contains("invalid JSON at line 1"), "{e}");
        let upper = D1.replace('1', "A");
        assert!(check_digest(&upper).is_err());
        assert!(check_digest(D1).is_ok());
    }
}
