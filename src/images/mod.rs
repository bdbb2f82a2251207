//! Image digests: the lock file that pins each tag to the digest it
//! resolved to ([`lock`]), and asking a registry which digest a tag points
//! to now ([`registry`]). `pull`, `update` and `login` (the command layer)
//! are built on these.

pub mod history;
pub mod lock;
pub mod registry;
pub mod sources;
pub mod update;
