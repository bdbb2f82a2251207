//! The reverse proxy's routes: which app answers at which subdomain or
//! sub-path of the proxy's domain, and where the proxy finds it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::check::Ctx;
use crate::catalog;
use crate::error::SpecError;
use crate::model::{Proxy, Route, RouteAt, Service};
use crate::spec::{Protocol, Spec};

/// A DNS name: labels of letters, digits and `-`, dots between.
fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// `/name` or `/a/b`: segments of letters, digits, `-`, `_` and `.`, no
/// trailing `/`.
fn is_url_path(s: &str) -> bool {
    s.strip_prefix('/').is_some_and(|rest| {
        !rest.is_empty()
            && rest.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            })
    })
}

/// The top-level `proxy` and every service's `proxy`, checked: each app at
/// one subdomain or sub-path, none twice, each with a web port to reach.
// Over ~100 lines on purpose: one check after another, each with the error
// that names its JSON path and the fix, in the order of the spec's fields.
pub(super) fn resolve_proxy(
    cx: &Ctx,
    spec: &Spec,
    services: &BTreeMap<String, Service>,
) -> Result<Option<Proxy>, SpecError> {
    let wanted: Vec<_> = spec
        .services
        .iter()
        .filter_map(|(n, s)| s.proxy.as_ref().map(|p| (n, p)))
        .collect();
    let Some(top) = &spec.proxy else {
        if let Some((name, _)) = wanted.first() {
            return Err(cx.err(
                format!("services.{name}.proxy"),
                "there is no top-level \"proxy\"; add \"proxy\": {\"domain\": \"…\"} to say \
                 where the apps are served",
            ));
        }
        return Ok(None);
    };
    cx.text("proxy.domain", &top.domain)?;
    if !is_dns_name(&top.domain) {
        return Err(cx.err(
            "proxy.domain",
            format!(
                "`{}` is not a domain name; write e.g. \"media.example.org\"",
                top.domain
            ),
        ));
    }
    let mut routes: Vec<Route> = Vec::new();
    for (name, p) in wanted {
        let at_path = format!("services.{name}.proxy");
        let at = match (&p.subdomain, &p.path) {
            (Some(sub), None) => {
                if !is_dns_name(sub) || sub.contains('.') {
                    return Err(cx.err(
                        format!("{at_path}.subdomain"),
                        format!("`{sub}` is not a DNS label; write e.g. \"{name}\""),
                    ));
                }
                RouteAt::Subdomain(sub.clone())
            }
            (None, Some(path)) => {
                if !is_url_path(path) {
                    return Err(cx.err(
                        format!("{at_path}.path"),
                        format!(
                            "`{path}` is not a URL path; write e.g. \"/{name}\" (a leading `/`, \
                             no trailing one)"
                        ),
                    ));
                }
                let app = spec.services.get(name).and_then(|s| s.app.as_deref());
                if let Some(app) = app
                    && catalog::catalog()
                        .ok()
                        .and_then(|c| c.get(app))
                        .is_some_and(|p| p.url_base_env.is_none())
                {
                    return Err(cx.err(
                        format!("{at_path}.path"),
                        format!(
                            "{app} cannot be told a URL base through its container, so it \
                             does not work under a sub-path; use \"subdomain\" instead"
                        ),
                    ));
                }
                RouteAt::Path(path.clone())
            }
            _ => {
                return Err(cx.err(&at_path, "give exactly one of \"subdomain\" and \"path\""));
            }
        };
        if let Some(other) = routes.iter().find(|r| r.at == at) {
            return Err(cx.err(
                &at_path,
                format!(
                    "{} already serves there; give each app its own",
                    other.service
                ),
            ));
        }
        let svc = services
            .get(name)
            .ok_or_else(|| cx.err(&at_path, "no such service"))?;
        let Some(port) = svc.ports.iter().find(|p| p.protocol == Protocol::Tcp) else {
            return Err(cx.err(
                &at_path,
                "the service publishes no TCP port for the proxy to reach; add one to \"ports\"",
            ));
        };
        let host = match port.address {
            Some(a) if !a.is_unspecified() => match a {
                IpAddr::V6(v6) => format!("[{v6}]"),
                IpAddr::V4(v4) => v4.to_string(),
            },
            _ => "127.0.0.1".to_owned(),
        };
        routes.push(Route {
            service: name.clone(),
            at,
            upstream: format!("{host}:{}", port.host),
        });
    }
    Ok(Some(Proxy {
        domain: top.domain.clone(),
        acme: top.acme,
        routes,
    }))
}
