//! A service's secrets: how each is delivered, and refusing any delivery
//! that would show a value where `inspect` reads it.

use std::collections::BTreeMap;

use super::check::{Ctx, is_env_name};
use super::parse_version;
use crate::catalog::Preset;
use crate::error::SpecError;
use crate::model::{DEFAULT_SECRET_FILE_ENV, Secret, Stack};
use crate::spec::{Backend, PodmanSecretType, SecretMode, SecretSpec, Spec};

/// Secrets delivered where `inspect` shows the value (`envFile`, or `env`
/// without a hiding engine), acknowledged with `allowEnvironmentValue`:
/// one warning line each for `render`, `validate` and the generator.
pub fn exposure_warnings(stack: &Stack) -> Vec<String> {
    let engine = stack.backend.name();
    stack
        .services
        .values()
        .flat_map(|svc| {
            svc.secrets
                .iter()
                .filter(|s| s.mode == SecretMode::EnvFile)
                .map(move |s| {
                    format!(
                        "services.{}.secrets.{}: the value is delivered as an environment \
                         variable, which `{engine} inspect` shows to anyone allowed to run it \
                         (allowEnvironmentValue is set); drop `mode` for the default file \
                         delivery ({})",
                        svc.name,
                        s.name,
                        if stack.backend == Backend::Podman {
                            "or use podman >= 5.3, where `env` hides it"
                        } else {
                            "/run/secrets/<name> and FILE__<name>"
                        }
                    )
                })
        })
        .collect()
}

/// What the delivery of one service's secrets depends on.
struct Delivery<'a> {
    cx: &'a Ctx<'a>,
    backend: Backend,
    version: Option<(u64, u64)>,
    /// podman hides type=env secrets from inspect from 5.3 on; absent
    /// means the current podman.
    hides_env: bool,
    /// The variable that carries a file's path, with `{name}`.
    file_env: Option<String>,
    environment: &'a BTreeMap<String, String>,
}

pub(super) fn resolve_secrets(
    cx: &Ctx,
    spec: &Spec,
    path: &str,
    secrets: &BTreeMap<String, SecretSpec>,
    secret_file_env: &Option<Option<String>>,
    preset: Option<&Preset>,
    environment: &BTreeMap<String, String>,
) -> Result<Vec<Secret>, SpecError> {
    // The variable that carries a file's path: the service's, the
    // catalog's, else the LinuxServer convention, for every service.
    let file_env = match secret_file_env {
        Some(v) => v.clone(),
        None => Some(
            preset
                .and_then(|p| p.secret_file_env.clone())
                .unwrap_or_else(|| DEFAULT_SECRET_FILE_ENV.to_owned()),
        ),
    };
    if let Some(pattern) = &file_env
        && !pattern.contains("{name}")
    {
        return Err(cx.err(
            format!("{path}.secretFileEnv"),
            format!("`{pattern}` lacks `{{name}}`; write e.g. \"FILE__{{name}}\""),
        ));
    }
    let backend = spec.backend;
    let version = spec.engine.version.as_deref().and_then(parse_version);
    let delivery = Delivery {
        cx,
        backend,
        version,
        hides_env: backend == Backend::Podman && version.is_none_or(|v| v >= (5, 3)),
        file_env,
        environment,
    };
    let mut out = Vec::new();
    let mut mounted_podman = None;
    let mut file_mode = None;
    for (name, s) in secrets {
        let sp = format!("{path}.secrets.{name}");
        let secret = delivery.secret(&sp, name, s)?;
        if secret.podman_secret_type == Some(PodmanSecretType::Mount) {
            mounted_podman = Some(sp.clone());
        }
        if secret.mode == SecretMode::File {
            file_mode = Some(sp);
        }
        out.push(secret);
    }
    if let (Some(a), Some(_)) = (mounted_podman, file_mode) {
        return Err(cx.err(
            a,
            "a mounted podman secret and `file` secrets would both use /run/secrets in the \
             container; give this one \"podmanSecretType\": \"env\" or use `file` for all",
        ));
    }
    Ok(out)
}

impl Delivery<'_> {
    /// The secret `name` (at key `sp`) and how it reaches the container.
    fn secret(&self, sp: &str, name: &str, s: &SecretSpec) -> Result<Secret, SpecError> {
        let cx = self.cx;
        if !is_env_name(name) {
            return Err(cx.err(
                sp,
                format!("`{name}` is not a valid variable name; use letters, digits and `_`"),
            ));
        }
        cx.normal_path(format!("{sp}.file"), &s.file)?;
        let written = s.mode.unwrap_or(SecretMode::File);
        self.check_keys(sp, s, written)?;
        // Where would the value be visible in `inspect`?
        let (mode, exposed) = match written {
            SecretMode::Env if self.hides_env => (SecretMode::PodmanSecret, false),
            SecretMode::Env | SecretMode::EnvFile => (SecretMode::EnvFile, true),
            m => (m, false),
        };
        if exposed && !s.allow_environment_value {
            return Err(self.exposed(sp, name, s, written));
        }
        if s.allow_environment_value && !exposed {
            return Err(cx.err(
                format!("{sp}.allowEnvironmentValue"),
                "only applies to `\"mode\": \"env\"` on Docker or podman before 5.3, or to \
                 `envFile`: nothing here puts the value where `inspect` shows it; remove it",
            ));
        }
        let path_env = match mode {
            SecretMode::File => s.file_env.clone().or_else(|| self.path_env(name)),
            _ => None,
        };
        let direct = match mode {
            SecretMode::File => path_env.as_deref(),
            _ => Some(name),
        };
        for var in [Some(name), direct].into_iter().flatten() {
            if self.environment.contains_key(var) {
                return Err(cx.err(
                    sp,
                    format!(
                        "`{var}` is also set in `environment`; a value belongs in one place, \
                         remove it from `environment`"
                    ),
                ));
            }
        }
        Ok(Secret {
            name: name.to_owned(),
            source: s.file.clone(),
            mode,
            path_env,
            podman_secret_type: self.podman_secret_type(sp, s, mode, written)?,
        })
    }

    /// The keys that only apply to some modes or engines.
    fn check_keys(&self, sp: &str, s: &SecretSpec, written: SecretMode) -> Result<(), SpecError> {
        let cx = self.cx;
        if written == SecretMode::PodmanSecret && self.backend != Backend::Podman {
            return Err(cx.err(
                format!("{sp}.mode"),
                "`podmanSecret` needs the podman backend; use `file` (the default) with Docker",
            ));
        }
        if s.podman_secret_type.is_some() && written != SecretMode::PodmanSecret {
            return Err(cx.err(
                format!("{sp}.podmanSecretType"),
                "only applies to mode `podmanSecret`; remove it",
            ));
        }
        if let Some(var) = &s.file_env {
            if written != SecretMode::File {
                return Err(cx.err(
                    format!("{sp}.fileEnv"),
                    "only applies to mode `file` (the default); remove it or `mode`",
                ));
            }
            if !is_env_name(var) {
                return Err(cx.err(
                    format!("{sp}.fileEnv"),
                    format!("`{var}` is not a valid variable name; use letters, digits and `_`"),
                ));
            }
        }
        Ok(())
    }

    /// The variable that carries the path of secret `name`'s file, by the
    /// service's pattern.
    fn path_env(&self, name: &str) -> Option<String> {
        self.file_env.as_ref().map(|p| p.replace("{name}", name))
    }

    /// Refusing a value in the environment, where `inspect` shows it.
    fn exposed(&self, sp: &str, name: &str, s: &SecretSpec, written: SecretMode) -> SpecError {
        let engine = match (self.backend, self.version) {
            (Backend::Docker, _) => "Docker".to_owned(),
            (Backend::Podman, Some((major, minor))) => format!("podman {major}.{minor}"),
            (Backend::Podman, None) => "podman".to_owned(),
        };
        let why = if written == SecretMode::Env {
            format!(
                "{engine} has no way to hide an environment value from `inspect` (podman does \
                 from 5.3)"
            )
        } else {
            "an env file's values are shown by `inspect`".to_owned()
        };
        self.cx.err(
            format!("{sp}.mode"),
            format!(
                "`{}` would put the value of {name} in the container's environment, where \
                 {why}; drop `mode` to deliver it as the file /run/secrets/{name} (its path in \
                 {}), or add \"allowEnvironmentValue\": true to accept that",
                if written == SecretMode::Env {
                    "env"
                } else {
                    "envFile"
                },
                s.file_env
                    .clone()
                    .or_else(|| self.path_env(name))
                    .unwrap_or_else(|| format!("FILE__{name}"))
            ),
        )
    }

    /// How a podman secret reaches the container. Mounted by default:
    /// podman before 5.3 shows the values of env secrets in `podman
    /// inspect` (containers/podman#23788).
    fn podman_secret_type(
        &self,
        sp: &str,
        s: &SecretSpec,
        mode: SecretMode,
        written: SecretMode,
    ) -> Result<Option<PodmanSecretType>, SpecError> {
        let kind = match (mode, written) {
            (SecretMode::PodmanSecret, SecretMode::Env) => Some(PodmanSecretType::Env),
            (SecretMode::PodmanSecret, _) => {
                Some(s.podman_secret_type.unwrap_or(PodmanSecretType::Mount))
            }
            _ => None,
        };
        if kind == Some(PodmanSecretType::Env)
            && let Some((major, minor)) = self.version
            && (major, minor) < (5, 3)
        {
            return Err(self.cx.err(
                format!("{sp}.podmanSecretType"),
                format!(
                    "podman {major}.{minor} shows the values of type=env secrets in `podman \
                     inspect` (fixed in podman 5.3); use \"podmanSecretType\": \"mount\" or \
                     \"mode\": \"file\""
                ),
            ));
        }
        Ok(kind)
    }
}
