//! A service's secrets: how each is delivered, and refusing any delivery
//! that would show a value where `inspect` reads it.

use std::collections::BTreeMap;

use super::check::{Ctx, is_env_name};
use crate::catalog::Preset;
use crate::error::SpecError;
use crate::model::{DEFAULT_SECRET_FILE_ENV, Secret, Stack};
use crate::spec::{Backend, PodmanSecretType, SecretMode, ServiceSpec};

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

pub(super) fn resolve_secrets(
    cx: &Ctx,
    backend: Backend,
    version: Option<(u64, u64)>,
    path: &str,
    svc: &ServiceSpec,
    preset: Option<&Preset>,
    environment: &BTreeMap<String, String>,
) -> Result<Vec<Secret>, SpecError> {
    // The variable that carries a file's path: the service's, the
    // catalog's, else the LinuxServer convention, for every service.
    let file_env = match &svc.secret_file_env {
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
    // podman hides type=env secrets from inspect from 5.3 on; absent
    // means the current podman.
    let hides_env = backend == Backend::Podman && version.is_none_or(|v| v >= (5, 3));
    let mut out = Vec::new();
    let mut mounted_podman = None;
    let mut file_mode = None;
    for (name, s) in &svc.secrets {
        let sp = format!("{path}.secrets.{name}");
        if !is_env_name(name) {
            return Err(cx.err(
                &sp,
                format!("`{name}` is not a valid variable name; use letters, digits and `_`"),
            ));
        }
        cx.normal_path(format!("{sp}.file"), &s.file)?;
        let written = s.mode.unwrap_or(SecretMode::File);
        if written == SecretMode::PodmanSecret && backend != Backend::Podman {
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
        // Where would the value be visible in `inspect`?
        let (mode, exposed) = match written {
            SecretMode::Env if hides_env => (SecretMode::PodmanSecret, false),
            SecretMode::Env | SecretMode::EnvFile => (SecretMode::EnvFile, true),
            m => (m, false),
        };
        if exposed && !s.allow_environment_value {
            let engine = match (backend, version) {
                (Backend::Docker, _) => "Docker".to_owned(),
                (Backend::Podman, Some((major, minor))) => format!("podman {major}.{minor}"),
                (Backend::Podman, None) => "podman".to_owned(),
            };
            let why = if written == SecretMode::Env {
                format!(
                    "{engine} has no way to hide an environment value from `inspect` (podman \
                     does from 5.3)"
                )
            } else {
                "an env file's values are shown by `inspect`".to_owned()
            };
            return Err(cx.err(
                format!("{sp}.mode"),
                format!(
                    "`{}` would put the value of {name} in the container's environment, where \
                     {why}; drop `mode` to deliver it as the file /run/secrets/{name} (its path \
                     in {}), or add \"allowEnvironmentValue\": true to accept that",
                    if written == SecretMode::Env {
                        "env"
                    } else {
                        "envFile"
                    },
                    s.file_env
                        .clone()
                        .or_else(|| file_env.as_ref().map(|p| p.replace("{name}", name)))
                        .unwrap_or_else(|| format!("FILE__{name}"))
                ),
            ));
        }
        if s.allow_environment_value && !exposed {
            return Err(cx.err(
                format!("{sp}.allowEnvironmentValue"),
                "only applies to `\"mode\": \"env\"` on Docker or podman before 5.3, or to \
                 `envFile`: nothing here puts the value where `inspect` shows it; remove it",
            ));
        }
        let path_env = match mode {
            SecretMode::File => s
                .file_env
                .clone()
                .or_else(|| file_env.as_ref().map(|p| p.replace("{name}", name))),
            _ => None,
        };
        let direct = match mode {
            SecretMode::File => path_env.as_deref(),
            _ => Some(name.as_str()),
        };
        for var in [Some(name.as_str()), direct].into_iter().flatten() {
            if environment.contains_key(var) {
                return Err(cx.err(
                    &sp,
                    format!(
                        "`{var}` is also set in `environment`; a value belongs in one place, \
                         remove it from `environment`"
                    ),
                ));
            }
        }
        // Mounted by default: podman before 5.3 shows the values of env
        // secrets in `podman inspect` (containers/podman#23788).
        let podman_secret_type = match (mode, written) {
            (SecretMode::PodmanSecret, SecretMode::Env) => Some(PodmanSecretType::Env),
            (SecretMode::PodmanSecret, _) => {
                Some(s.podman_secret_type.unwrap_or(PodmanSecretType::Mount))
            }
            _ => None,
        };
        if podman_secret_type == Some(PodmanSecretType::Env)
            && let Some((major, minor)) = version
            && (major, minor) < (5, 3)
        {
            return Err(cx.err(
                format!("{sp}.podmanSecretType"),
                format!(
                    "podman {major}.{minor} shows the values of type=env secrets in `podman \
                     inspect` (fixed in podman 5.3); use \"podmanSecretType\": \"mount\" or \
                     \"mode\": \"file\""
                ),
            ));
        }
        if podman_secret_type == Some(PodmanSecretType::Mount) {
            mounted_podman = Some(sp.clone());
        }
        if mode == SecretMode::File {
            file_mode = Some(sp.clone());
        }
        out.push(Secret {
            name: name.clone(),
            source: s.file.clone(),
            mode,
            path_env,
            podman_secret_type,
        });
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
