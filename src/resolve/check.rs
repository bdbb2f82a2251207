//! Field checks shared by the resolve steps: the validation context that
//! names the key at fault, path and name rules, image references.

use crate::error::SpecError;
use crate::limits;

/// Units systemd itself gives a meaning, from systemd.special(7) (systemd
/// 252 to 257): a stack unit with one of these names would replace systemd's
/// own (`prefix: "multi-user"` would render `multi-user.target`).
pub(super) const SYSTEMD_SPECIAL_UNITS: &[&str] = &[
    "-.mount",
    "-.slice",
    "app.slice",
    "background.slice",
    "basic.target",
    "bluetooth.target",
    "boot-complete.target",
    "capsule.slice",
    "cryptsetup-pre.target",
    "cryptsetup.target",
    "ctrl-alt-del.target",
    "dbus.service",
    "dbus.socket",
    "default.target",
    "display-manager.service",
    "emergency.service",
    "emergency.target",
    "exit.target",
    "factory-reset.target",
    "final.target",
    "first-boot-complete.target",
    "getty-pre.target",
    "getty.target",
    "graphical-session-pre.target",
    "graphical-session.target",
    "graphical.target",
    "halt.target",
    "hibernate.target",
    "hybrid-sleep.target",
    "imports-pre.target",
    "imports.target",
    "init.scope",
    "initrd-fs.target",
    "initrd-root-device.target",
    "initrd-root-fs.target",
    "initrd-switch-root.target",
    "initrd-usr-fs.target",
    "initrd.target",
    "integritysetup-pre.target",
    "integritysetup.target",
    "kbrequest.target",
    "kexec.target",
    "local-fs-pre.target",
    "local-fs.target",
    "machine.slice",
    "machines.target",
    "multi-user.target",
    "network-online.target",
    "network-pre.target",
    "network.target",
    "nss-lookup.target",
    "nss-user-lookup.target",
    "paths.target",
    "poweroff.target",
    "printer.target",
    "reboot.target",
    "remote-cryptsetup.target",
    "remote-fs-pre.target",
    "remote-fs.target",
    "remote-veritysetup.target",
    "rescue.service",
    "rescue.target",
    "rpcbind.target",
    "runlevel0.target",
    "runlevel1.target",
    "runlevel2.target",
    "runlevel3.target",
    "runlevel4.target",
    "runlevel5.target",
    "runlevel6.target",
    "session.slice",
    "shutdown.target",
    "sigpwr.target",
    "single-user.target",
    "sleep.target",
    "slices.target",
    "smartcard.target",
    "sockets.target",
    "soft-reboot.target",
    "sound.target",
    "ssh-access.target",
    "storage-target-mode.target",
    "suspend-then-hibernate.target",
    "suspend.target",
    "swap.target",
    "sysinit.target",
    "syslog.socket",
    "sysroot.mount",
    "system-update-cleanup.service",
    "system-update-pre.target",
    "system-update.target",
    "system.slice",
    "time-set.target",
    "time-sync.target",
    "timers.target",
    "tpm2.target",
    "umount.target",
    "usb-gadget.target",
    "user.slice",
    "veritysetup-pre.target",
    "veritysetup.target",
    "xdg-desktop-autostart.target",
];

/// Why a unit name belongs to systemd, or `None` when the stack may use it.
pub fn systemd_owned(unit: &str) -> Option<&'static str> {
    if SYSTEMD_SPECIAL_UNITS.contains(&unit) {
        Some("a special unit of systemd (systemd.special(7))")
    } else if unit.starts_with("systemd-") || unit.starts_with("systemd.") {
        Some("in systemd's own namespace (`systemd-*`, `systemd.*`)")
    } else if unit.starts_with("dbus") {
        Some("in the D-Bus daemon's `dbus*` namespace")
    } else {
        None
    }
}

/// Host trees a container must never get as a bind mount: the root, the
/// operating system and the kernel's interfaces. `/proc` and `/sys` are
/// refused with everything below them; the others only as a whole.
pub(super) const SYSTEM_TREES: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/nix",
    "/nix/store",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var",
];
pub(super) const KERNEL_TREES: &[&str] = &["/proc", "/sys"];

/// Validation context: the origin file for error messages.
pub(super) struct Ctx<'a> {
    pub(super) origin: &'a str,
}

impl Ctx<'_> {
    pub(super) fn err(&self, path: impl AsRef<str>, message: impl Into<String>) -> SpecError {
        SpecError::at(self.origin, path.as_ref(), message)
    }

    /// A value that ends up in a unit file or an argument: no NUL, no newline.
    pub(super) fn text(&self, path: impl AsRef<str>, value: &str) -> Result<(), SpecError> {
        if let Some(c) = value
            .chars()
            .find(|c| *c == '\0' || *c == '\n' || *c == '\r')
        {
            let what = match c {
                '\0' => "a NUL byte",
                '\n' => "a newline",
                _ => "a carriage return",
            };
            return Err(self.err(
                path,
                format!(
                    "contains {what}, which cannot be passed through a systemd unit; remove it \
                     (for multi-line secrets or config use an environment file or a volume)"
                ),
            ));
        }
        Ok(())
    }

    /// A number within one of the [`limits`]; `unit` follows the range in
    /// the message (" seconds").
    pub(super) fn within(
        &self,
        path: impl AsRef<str>,
        value: u64,
        range: &std::ops::RangeInclusive<u64>,
        unit: &str,
    ) -> Result<(), SpecError> {
        if range.contains(&value) {
            return Ok(());
        }
        Err(self.err(
            path,
            format!("{value} is out of range {}{unit}", limits::span(range)),
        ))
    }

    pub(super) fn abs_path(&self, path: impl AsRef<str>, value: &str) -> Result<(), SpecError> {
        let path = path.as_ref();
        self.text(path, value)?;
        if !value.starts_with('/') {
            return Err(self.err(
                path,
                format!("`{value}` is a relative path; use an absolute path starting with /"),
            ));
        }
        Ok(())
    }

    /// An absolute path written the one way the kernel resolves it: no
    /// `..` or `.` component, no `//`, no trailing `/`. Anything else is
    /// ambiguous (`/x` and `/x/` are one mount point) or escapes its parent.
    pub(super) fn normal_path(&self, path: impl AsRef<str>, value: &str) -> Result<(), SpecError> {
        let path = path.as_ref();
        self.abs_path(path, value)?;
        if value == "/" {
            return Ok(());
        }
        let parts: Vec<&str> = value[1..].split('/').collect();
        let problem = if value.ends_with('/') {
            Some("ends with `/`")
        } else if parts.contains(&"..") {
            Some("contains `..`")
        } else if parts.contains(&".") {
            Some("contains a `.` component")
        } else if parts.contains(&"") {
            Some("contains `//`")
        } else {
            None
        };
        if let Some(problem) = problem {
            let clean = normalise(value);
            return Err(self.err(
                path,
                format!(
                    "`{value}` {problem}; write the path without it, e.g. `{clean}` (checked \
                     literally, so two spellings of one directory cannot slip past the other \
                     checks)"
                ),
            ));
        }
        Ok(())
    }

    /// A host directory given to a container or written by nixarr-units:
    /// normalised, and not the root, a system tree or a kernel interface.
    pub(super) fn host_path(&self, path: impl AsRef<str>, value: &str) -> Result<(), SpecError> {
        let path = path.as_ref();
        self.normal_path(path, value)?;
        let kernel = KERNEL_TREES
            .iter()
            .find(|t| value.strip_prefix(**t).is_some_and(|r| r.starts_with('/')));
        if SYSTEM_TREES.contains(&value) || kernel.is_some() {
            let what = if value == "/" {
                "the root of the host".to_owned()
            } else {
                format!(
                    "the host's system tree {}",
                    kernel.copied().unwrap_or(value)
                )
            };
            return Err(self.err(
                path,
                format!(
                    "`{value}` is {what}; a container must not get it (or write into it). Use a \
                     directory of its own, e.g. /var/lib/nixarr or /srv/media"
                ),
            ));
        }
        Ok(())
    }

    /// A bind-mount side: absolute and free of the `:` and `,` that the
    /// engines' `--volume` syntax cannot carry.
    pub(super) fn mount_path(&self, path: impl AsRef<str>, value: &str) -> Result<(), SpecError> {
        let path = path.as_ref();
        self.normal_path(path, value)?;
        if let Some(c) = value.chars().find(|c| matches!(c, ':' | ',')) {
            return Err(self.err(
                path,
                format!(
                    "`{value}` contains `{c}`, which the engines' volume syntax cannot express; \
                     rename the directory or mount a parent directory"
                ),
            ));
        }
        Ok(())
    }
}

/// `value` with `//`, `.` and `..` resolved lexically and no trailing `/`,
/// for the hint of an error.
pub(super) fn normalise(value: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in value.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p),
        }
    }
    format!("/{}", out.join("/"))
}

pub(super) fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A network's or an interface's name: letters, digits, `_`, `.` and `-`,
/// starting with a letter or digit.
pub(super) fn is_network_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

pub(super) fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why `name` cannot be a network interface's name, if it cannot.
pub(super) fn check_interface_name(name: &str) -> Result<(), String> {
    let range = limits::INTERFACE_LENGTH;
    if !range.contains(&(name.len() as u64)) {
        return Err(format!(
            "is {} characters long; an interface name has {} to {} (the kernel's limit)",
            name.len(),
            range.start(),
            range.end()
        ));
    }
    if !is_network_name(name) {
        return Err(
            "is not a valid interface name; use letters, digits, `_`, `.` and `-`, starting \
             with a letter or digit"
                .to_owned(),
        );
    }
    Ok(())
}

pub(super) fn check_id(cx: &Ctx, path: &str, id: u64) -> Result<(), SpecError> {
    if !limits::ID.contains(&id) {
        return Err(cx.err(path, format!("{id} is not a valid uid/gid")));
    }
    Ok(())
}

pub(super) fn port_number(cx: &Ctx, path: &str, n: u64) -> Result<u16, SpecError> {
    match u16::try_from(n) {
        Ok(p) if limits::PORT.contains(&n) => Ok(p),
        _ => Err(cx.err(
            path,
            format!("port {n} is out of range {}", limits::span(&limits::PORT)),
        )),
    }
}

/// Whether the repository part of `image` (after a registry host, before
/// the tag or digest) has an uppercase letter.
pub(super) fn repository_has_uppercase(image: &str) -> bool {
    let name = image.split('@').next().unwrap_or(image);
    let name = match name.rsplit_once(':') {
        Some((n, tag)) if !tag.contains('/') => n,
        _ => name,
    };
    let repo = match name.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest,
        _ => name,
    };
    repo.chars().any(|c| c.is_ascii_uppercase())
}

/// An image reference as the distribution reference grammar defines it
/// (the one the engines parse): lowercase repository, a tag of 1-128
/// characters, a digest of the right length.
pub(super) fn check_image(cx: &Ctx, path: &str, image: &str) -> Result<(), SpecError> {
    use oci_spec::distribution::{ParseError, Reference};
    let Err(e) = image.parse::<Reference>() else {
        return Ok(());
    };
    let why = match e {
        ParseError::DigestInvalidLength => {
            "its digest has the wrong length (sha256 takes 64 hex digits)"
        }
        ParseError::DigestUnsupported | ParseError::DigestInvalidFormat => {
            "its digest is not `sha256:` (or `sha384:`/`sha512:`) followed by hex digits"
        }
        ParseError::NameTooLong => "its name is longer than 255 characters",
        ParseError::NameEmpty => "it is empty",
        ParseError::TagInvalidFormat => {
            "its tag may only hold letters, digits, `_`, `.` and `-` (at most 128)"
        }
        _ if image.split('@').next().is_some_and(|n| n.ends_with(':')) => "its tag is empty",
        _ if image.split_once('@').is_some_and(|(_, d)| {
            let (alg, hex) = d.split_once(':').unwrap_or(("", d));
            let want = match alg {
                "sha256" => 64,
                "sha384" => 96,
                "sha512" => 128,
                _ => 0,
            };
            want != 0 && hex.len() != want
        }) =>
        {
            "its digest has the wrong length (sha256 takes 64 hex digits, sha512 128)"
        }
        ParseError::NameContainsUppercase => "the repository name has uppercase letters",
        _ if repository_has_uppercase(image) => {
            "the repository name has uppercase letters (only the registry host and the tag may)"
        }
        _ => "it does not follow the reference grammar ([registry/]repository[:tag][@digest])",
    };
    Err(cx.err(
        path,
        format!(
            "`{image}` is not a valid image reference: {why}; write it like \
             \"ghcr.io/owner/app:1.2\" or \"docker.io/library/nginx@sha256:<64 hex digits>\""
        ),
    ))
}
