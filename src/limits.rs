//! The numeric limits a spec's values must keep. The NixOS module checks
//! the same ones at evaluation (`limits` in modules/lib.nix);
//! tests/nix_eval.rs compares the two, so neither changes alone.

use std::ops::RangeInclusive;

/// A uid or gid (`(uid_t) -1` is "no change", so not a user).
pub const ID: RangeInclusive<u64> = 0..=4_294_967_294;
/// A TCP or UDP port.
pub const PORT: RangeInclusive<u64> = 1..=65535;
/// Seconds between a container's stop signal and SIGKILL.
pub const STOP_TIMEOUT: RangeInclusive<u64> = 1..=3600;
/// Seconds systemd waits for a container to start (and become healthy).
pub const START_TIMEOUT: RangeInclusive<u64> = 10..=86400;
/// Failed health checks in a row before a container is unhealthy.
pub const HEALTH_RETRIES: RangeInclusive<u64> = 1..=100;
/// The HTTP status a probe may expect.
pub const HTTP_STATUS: RangeInclusive<u64> = 100..=599;
/// Characters in a service name.
pub const NAME_LENGTH: RangeInclusive<u64> = 1..=48;
/// Characters in the stack's prefix.
pub const PREFIX_LENGTH: RangeInclusive<u64> = 1..=32;
/// Characters in a network interface's name (the kernel's IFNAMSIZ less
/// the NUL).
pub const INTERFACE_LENGTH: RangeInclusive<u64> = 1..=15;
/// Octal digits in a umask.
pub const UMASK_DIGITS: RangeInclusive<u64> = 3..=4;
/// Backups of each service a scheduled backup keeps.
pub const BACKUP_KEEP: RangeInclusive<u64> = 1..=1000;

/// Every limit by its name in modules/lib.nix.
pub const ALL: &[(&str, RangeInclusive<u64>)] = &[
    ("id", ID),
    ("port", PORT),
    ("stopTimeout", STOP_TIMEOUT),
    ("startTimeout", START_TIMEOUT),
    ("healthRetries", HEALTH_RETRIES),
    ("httpStatus", HTTP_STATUS),
    ("nameLength", NAME_LENGTH),
    ("prefixLength", PREFIX_LENGTH),
    ("interfaceLength", INTERFACE_LENGTH),
    ("umaskDigits", UMASK_DIGITS),
    ("backupKeep", BACKUP_KEEP),
];

/// A limit as the messages write it: `1-3600`.
pub fn span(range: &RangeInclusive<u64>) -> String {
    format!("{}-{}", range.start(), range.end())
}
