//! Which digest a tag points to now, asked of its registry in-process by
//! the ORAS project's OCI distribution client (`oci-client`): a manifest
//! HEAD accepting OCI indexes, Docker manifest lists and single manifests,
//! so the digest is the top-level one the registry serves for the tag —
//! what an engine records when it pulls the tag, and what `repo@digest`
//! pulls again. The client runs the registry's token flow (Bearer or
//! Basic) with the engine's credentials: podman's auth file as podman
//! finds it, Docker's `config.json` (credential helpers included). Plain
//! HTTP only for registries the engine is configured to reach insecurely
//! (podman: registries.conf; Docker: its daemon's insecure registries,
//! loopback included). A tag is asked where the engine pulls it
//! ([`sources`](crate::images::sources)): a podman short name through its
//! alias or search registry, a moved prefix at its location, the mirrors
//! first. Images are asked concurrently, a bounded number at a time; one
//! that cannot be resolved fails the whole run before anything is changed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::Engine;
use crate::images::lock::Resolved;
use crate::images::sources::{RegistriesConf, ShortNames, Source, candidates};
use crate::spec::Backend;
use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt as _;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

/// How many images are asked at a time by default.
pub const DEFAULT_JOBS: usize = 8;

/// How to reach registries, as the engine does.
#[derive(Debug, Clone)]
pub struct Registry {
    /// Credential files, the first that has an entry for a registry wins
    /// (podman's lookup order; Docker has one).
    pub auth_files: Vec<PathBuf>,
    /// Which registries are reached over plain HTTP.
    pub insecure: Insecure,
    /// How podman qualifies a short name (`None`: Docker, for which one
    /// is always Docker Hub's).
    pub short_names: Option<ShortNames>,
    /// Where repositories are pulled from instead of, or before, their
    /// registry (registries.conf's `[[registry]]` entries, Docker Hub's
    /// mirrors on Docker).
    pub sources: Vec<Source>,
    /// Images asked at a time.
    pub jobs: usize,
    /// Seconds one image may take.
    pub timeout_secs: u64,
}

/// Registries the engine reaches over plain HTTP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Insecure {
    /// `host[:port]`, or `*.domain` (registries.conf's wildcard).
    pub hosts: BTreeSet<String>,
    /// Docker's insecure networks (127.0.0.0/8 unless configured away).
    pub networks: Vec<ipnet::IpNet>,
}

impl Insecure {
    /// Whether `registry` (`host[:port]`) is reached over plain HTTP.
    pub fn contains(&self, registry: &str) -> bool {
        let host = host_of(registry);
        let by_name = self.hosts.iter().any(|h| match h.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => h == registry || h == host,
        });
        by_name
            || host
                .trim_matches(['[', ']'])
                .parse::<IpAddr>()
                .is_ok_and(|ip| self.networks.iter().any(|n| n.contains(&ip)))
    }
}

/// The host of `host[:port]` (an IPv6 literal keeps its brackets).
fn host_of(registry: &str) -> &str {
    match registry.rsplit_once(':') {
        Some((h, port)) if !port.contains(']') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    }
}

impl Registry {
    /// Registries as `engine` reaches them.
    pub fn for_engine(engine: &Engine) -> Result<Self> {
        let home =
            || std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
        let docker_config = std::env::var_os("DOCKER_CONFIG")
            .map_or_else(|| home().join(".docker"), PathBuf::from)
            .join("config.json");
        let (auth_files, insecure, short_names, sources) = match engine.backend {
            Backend::Podman => {
                let conf = RegistriesConf::load(&registries_conf_files(&home()))?;
                (
                    podman_auth_files(&home(), docker_config),
                    conf.insecure,
                    Some(conf.short_names),
                    conf.sources,
                )
            }
            Backend::Docker => {
                let (insecure, sources) = docker_conf(engine);
                (vec![docker_config], insecure, None, sources)
            }
        };
        Ok(Registry {
            auth_files,
            insecure,
            short_names,
            sources,
            jobs: DEFAULT_JOBS,
            timeout_secs: 60,
        })
    }

    /// `image` as the engine pulls it, and so names it in the image's
    /// RepoDigests: a podman short name qualified by registries.conf (as
    /// given when podman could not pull it either: a check says why). With
    /// several search registries, under the first: an image podman found
    /// under a later one is matched by its ImageDigest instead.
    pub fn pulled_as(&self, image: &str) -> String {
        self.short_names
            .as_ref()
            .and_then(|s| s.qualify(image).ok())
            .unwrap_or_else(|| image.to_owned())
    }

    /// The credentials for `registry` (as a reference names it), from the
    /// first file that has them.
    pub fn credentials(&self, registry: &str) -> RegistryAuth {
        for f in &self.auth_files {
            let Ok(file) = std::fs::File::open(f) else {
                continue;
            };
            let found = docker_credential::get_credential_from_reader(
                std::io::BufReader::new(file),
                registry,
            );
            match found {
                Ok(docker_credential::DockerCredential::UsernamePassword(u, p)) => {
                    return RegistryAuth::Basic(u, p);
                }
                Ok(docker_credential::DockerCredential::IdentityToken(_)) => {
                    tracing::debug!(
                        "{}: an identity token for {registry} (not used: asked anonymously)",
                        f.display()
                    );
                    return RegistryAuth::Anonymous;
                }
                Err(e) => tracing::debug!("{}: no credentials for {registry}: {e}", f.display()),
            }
        }
        RegistryAuth::Anonymous
    }

    /// The client for `references`: plain HTTP to their insecure
    /// registries, HTTPS with the system's CA certificates.
    fn client<'a>(&self, references: impl Iterator<Item = &'a Reference>) -> Result<Client> {
        // oci-client 0.18 also builds a default HTTP client, and reqwest
        // panics building one where the system has no CA certificates
        // (even for plain HTTP): say so instead. An engine cannot pull
        // over HTTPS there either. The certificates read for the check are
        // the ones the client trusts, so the store (hundreds of files) is
        // not read again for it.
        let native = rustls_native_certs::load_native_certs();
        if native.certs.is_empty() {
            let why: Vec<String> = native.errors.iter().map(ToString::to_string).collect();
            bail!(
                "this system has no CA certificates ({}), which the registry client needs; \
                 install them (Debian: apt-get install ca-certificates) or point SSL_CERT_FILE \
                 at a PEM bundle",
                why.join("; ")
            );
        }
        let insecure: Vec<String> = references
            .map(|r| r.resolve_registry().to_owned())
            .filter(|r| self.insecure.contains(r))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let config = |tls_certs_only| ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure.clone()),
            connect_timeout: Some(Duration::from_secs(self.timeout_secs.min(15))),
            read_timeout: Some(Duration::from_secs(self.timeout_secs)),
            user_agent: concat!("nixarr-units/", env!("CARGO_PKG_VERSION")),
            tls_certs_only,
            ..ClientConfig::default()
        };
        let certs = native
            .certs
            .into_iter()
            .map(|der| Certificate {
                encoding: CertificateEncoding::Der,
                data: der.to_vec(),
            })
            .collect();
        // reqwest refuses the whole list for one certificate it cannot take
        // as a root, where its own loading skips it: then it loads them.
        Client::try_from(config(certs))
            .or_else(|e| {
                tracing::debug!(
                    "the system's CA certificates as roots: {}; letting the client load them",
                    error_chain(&e)
                );
                Client::try_from(config(Vec::new()))
            })
            .map_err(|e| anyhow!("cannot set up the registry client: {}", error_chain(&e)))
    }

    /// The digest `image` (a tag reference, parsed as `reference`) points
    /// to now.
    async fn resolve(
        &self,
        client: &Client,
        auths: &BTreeMap<String, RegistryAuth>,
        image: &str,
        candidates: &[Reference],
        timeout: Duration,
        on_done: &(dyn Fn(&str, &Result<Resolved>) + Sync),
    ) -> Result<Resolved> {
        let mut failed = Vec::new();
        for reference in candidates {
            let auth = auths
                .get(reference.registry())
                .unwrap_or(&RegistryAuth::Anonymous);
            let asked =
                tokio::time::timeout(timeout, client.fetch_manifest_digest(reference, auth)).await;
            let why = match asked {
                Ok(Ok(digest)) => {
                    let r = Ok(Resolved {
                        digest,
                        platform: platform(),
                        resolved: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                            .to_string(),
                    });
                    on_done(image, &r);
                    return r;
                }
                Ok(Err(e)) => error_chain(&e),
                Err(_) => format!("no answer within {}s", timeout.as_secs()),
            };
            tracing::debug!("{image}: {reference}: {why}");
            failed.push((reference, why));
        }
        let why = match failed.as_slice() {
            [(_, why)] => why.clone(),
            all => all
                .iter()
                .map(|(r, why)| format!("{r}: {why}"))
                .collect::<Vec<_>>()
                .join("; "),
        };
        let r = Err(cannot_resolve(image, &why));
        on_done(image, &r);
        r
    }

    /// Where `image` (a tag reference) is asked, in order: each full name
    /// the engine tries for it (a podman short name: its alias, or each
    /// search registry), and for each its mirrors, then its location. A
    /// name registries.conf made (not the spec's, which render checked)
    /// goes through oci-spec's parser.
    fn candidates(&self, image: &str) -> Result<Vec<Reference>> {
        let qualified = match &self.short_names {
            Some(short) => short.candidates(image)?,
            None => vec![image.to_owned()],
        };
        let from_conf = |name: &str| {
            name.parse::<Reference>().map_err(|e| {
                anyhow!(
                    "registries.conf sends {image} to {name}, which is not an image reference \
                     ({e}); fix registries.conf (podman info shows what podman makes of it)"
                )
            })
        };
        let mut out = Vec::new();
        for q in qualified {
            let ours = q == image;
            let reference = if ours {
                reference_of(&q)?
            } else {
                from_conf(&q)?
            };
            if self.sources.is_empty() {
                out.push(reference);
                continue;
            }
            let name = format!("{}/{}", reference.registry(), reference.repository());
            let tag = reference.tag().unwrap_or("latest");
            for c in candidates(&self.sources, &name) {
                let full = format!("{c}:{tag}");
                out.push(if ours && c == name {
                    reference_of(&full)?
                } else {
                    from_conf(&full)?
                });
            }
        }
        Ok(out)
    }

    /// Resolve every image, `self.jobs` at a time; `on_done` is called as
    /// each finishes (for progress). The first failure (in `images`' order)
    /// is the error.
    pub fn resolve_all(
        &self,
        images: &[String],
        on_done: &(dyn Fn(&str, &Result<Resolved>) + Sync),
    ) -> Result<BTreeMap<String, Resolved>> {
        if images.is_empty() {
            return Ok(BTreeMap::new());
        }
        let references = images
            .iter()
            .map(|i| self.candidates(i))
            .collect::<Result<Vec<_>>>()?;
        // rustls is built without a default provider; ring is ours. Another
        // installed first (a second call) is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = &self.client(references.iter().flatten())?;
        // Each registry's credentials once (the files are read per lookup).
        let auths: &BTreeMap<String, RegistryAuth> = &references
            .iter()
            .flatten()
            .map(|r| r.registry().to_owned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|r| {
                let auth = self.credentials(&r);
                (r, auth)
            })
            .collect();
        let timeout = Duration::from_secs(self.timeout_secs);
        // A runtime of its own, on a thread of its own: callers may or may
        // not be inside one.
        let results: Vec<Result<Resolved>> = std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("starting the registry client's runtime")?;
                anyhow::Ok(
                    rt.block_on(
                        futures_util::stream::iter(images.iter().zip(&references))
                            .map(|(image, candidates)| {
                                self.resolve(client, auths, image, candidates, timeout, on_done)
                            })
                            .buffered(self.jobs.max(1))
                            .collect(),
                    ),
                )
            })
            .join()
            .map_err(|_| anyhow!("the registry client's thread panicked"))?
        })?;
        images
            .iter()
            .zip(results)
            .map(|(image, r)| Ok((image.clone(), r?)))
            .collect()
    }
}

/// The distribution reference of `image`, a tag reference as a manifest
/// names it. The manifest's images passed render's check against
/// oci-spec's grammar (`resolve::check::check_image`), so one made only of
/// the grammar's characters is split here as oci-spec splits it (the
/// normalisation of Docker's `reference` package: a first component
/// without `.` or `:` that is not `localhost` is a Docker Hub path, and a
/// one-component Docker Hub name is under `library/`) without its parser,
/// whose regex (a Unicode `\w{0,127}`) takes about 20 ms to compile: an
/// eighth of a 50-image check. Anything else goes through the parser and
/// its error.
pub(crate) fn reference_of(image: &str) -> Result<Reference> {
    let plain = image
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-:/".contains(&b));
    let name = crate::images::lock::repository(image);
    // What follows the repository: nothing, or `:` and the tag (`@` is not
    // among the plain characters).
    let tag = image.get(name.len() + 1..).unwrap_or("latest");
    if !plain || name.is_empty() || tag.is_empty() {
        return image
            .parse::<Reference>()
            .map_err(|e| anyhow!("{image} is not an image reference: {e}"));
    }
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest.to_owned())
        }
        _ => ("docker.io", name.to_owned()),
    };
    let registry = if registry == "index.docker.io" {
        "docker.io"
    } else {
        registry
    };
    let repository = if registry == "docker.io" && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    Ok(Reference::with_tag(
        registry.to_owned(),
        repository,
        tag.to_owned(),
    ))
}

fn cannot_resolve(image: &str, why: &str) -> anyhow::Error {
    anyhow!(
        "cannot resolve {image} in its registry: {why}; check that the registry is reachable \
         and the tag exists, and for a private registry log in first (`nixarr-units login \
         REGISTRY`)"
    )
}

/// An error and its causes on one line (reqwest's top-level message alone
/// does not say that the connection was refused).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

/// podman's credential files in the order it reads them:
/// `REGISTRY_AUTH_FILE` alone when set; else the runtime directory's
/// `containers/auth.json` (`$XDG_RUNTIME_DIR`, or `/run/containers/UID`
/// where it is unset, as for root in a system service), then
/// `~/.config/containers/auth.json`, then Docker's `config.json`.
fn podman_auth_files(home: &Path, docker_config: PathBuf) -> Vec<PathBuf> {
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
        return vec![PathBuf::from(f)];
    }
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").map_or_else(
        || {
            PathBuf::from(format!(
                "/run/containers/{}",
                rustix::process::getuid().as_raw()
            ))
        },
        |d| PathBuf::from(d).join("containers"),
    );
    let config =
        std::env::var_os("XDG_CONFIG_HOME").map_or_else(|| home.join(".config"), PathBuf::from);
    vec![
        runtime.join("auth.json"),
        config.join("containers/auth.json"),
        docker_config,
    ]
}

/// The registries.conf files podman reads: `CONTAINERS_REGISTRIES_CONF`
/// alone when set; else the user's `~/.config/containers/registries.conf`
/// when it exists, else `/etc/containers/registries.conf`; then the
/// drop-ins of `/etc/containers/registries.conf.d` and the user's, in
/// name order.
fn registries_conf_files(home: &Path) -> Vec<PathBuf> {
    if let Some(f) = std::env::var_os("CONTAINERS_REGISTRIES_CONF") {
        return vec![PathBuf::from(f)];
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map_or_else(|| home.join(".config"), PathBuf::from)
        .join("containers");
    let user = config.join("registries.conf");
    let mut files = vec![if user.is_file() {
        user
    } else {
        PathBuf::from("/etc/containers/registries.conf")
    }];
    for dir in [
        PathBuf::from("/etc/containers/registries.conf.d"),
        config.join("registries.conf.d"),
    ] {
        let mut d: Vec<PathBuf> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        d.sort();
        files.extend(d);
    }
    files
}

/// Docker's insecure registries and Docker Hub's mirrors as its daemon
/// reports them; loopback (its default) and none when it cannot say.
fn docker_conf(engine: &Engine) -> (Insecure, Vec<Source>) {
    let cmd = engine.registry_config();
    match cmd
        .run()
        .and_then(|out| crate::images::sources::from_docker_info(&out))
    {
        Ok(conf) => conf,
        Err(e) => {
            tracing::debug!(
                "`{cmd}`: {e:#}; taking 127.0.0.0/8 as Docker's insecure registries, and no mirrors"
            );
            let insecure = Insecure {
                networks: vec![ipnet::IpNet::V4(
                    ipnet::Ipv4Net::new(std::net::Ipv4Addr::LOCALHOST, 8).unwrap_or_default(),
                )],
                ..Insecure::default()
            };
            (insecure, Vec::new())
        }
    }
}

/// This machine's platform as OCI writes it (`linux/amd64`).
pub fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("linux/{arch}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn registry(insecure: Insecure, auth_files: Vec<PathBuf>) -> Registry {
        Registry {
            auth_files,
            insecure,
            short_names: None,
            sources: Vec::new(),
            jobs: 4,
            timeout_secs: 5,
        }
    }

    #[test]
    fn credentials_come_from_the_first_file_that_has_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        // podman login's auth.json, then Docker's config.json (docker.io
        // under its v1 URL).
        let podman = dir.path().join("auth.json");
        std::fs::write(
            &podman,
            r#"{"auths":{"127.0.0.1:5000":{"auth":"ZTJlOnB3LTE="}}}"#,
        )
        .unwrap();
        let docker = dir.path().join("config.json");
        std::fs::write(
            &docker,
            r#"{"auths":{"127.0.0.1:5000":{"auth":"b3RoZXI6cHctMg=="},"https://index.docker.io/v1/":{"auth":"aHViOnB3LTM="}}}"#,
        )
        .unwrap();
        let r = registry(
            Insecure::default(),
            vec![dir.path().join("missing.json"), podman, docker],
        );
        assert_eq!(
            r.credentials("127.0.0.1:5000"),
            RegistryAuth::Basic("e2e".to_owned(), "pw-1".to_owned())
        );
        assert_eq!(
            r.credentials("docker.io"),
            RegistryAuth::Basic("hub".to_owned(), "pw-3".to_owned())
        );
        assert_eq!(r.credentials("ghcr.io"), RegistryAuth::Anonymous);
    }

    fn parts(r: &Reference) -> (String, String, Option<String>, Option<String>, String) {
        (
            r.registry().to_owned(),
            r.repository().to_owned(),
            r.tag().map(str::to_owned),
            r.digest().map(str::to_owned),
            r.resolve_registry().to_owned(),
        )
    }

    #[test]
    fn references_split_as_oci_spec_splits_them() {
        for image in [
            "lscr.io/linuxserver/sonarr:latest",
            "lscr.io/linuxserver/sonarr",
            "ghcr.io/hotio/qbittorrent:release-5.0",
            "jellyfin/jellyfin:10.10.3",
            "busybox",
            "busybox:1.37",
            "docker.io/busybox",
            "index.docker.io/library/busybox:1",
            "localhost/app:v1",
            "localhost:5000/team/app",
            "127.0.0.1:41537/bench/svc1:latest",
            "qmcgaw/gluetun:v3.40.0",
            "registry.example/a/b/c:__x.y-z",
            "my-registry.local/sub_dir/app__x",
        ] {
            let ours = reference_of(image).unwrap();
            let theirs = image.parse::<Reference>().unwrap();
            assert_eq!(parts(&ours), parts(&theirs), "{image}");
        }
        // What the grammar refuses goes to the parser, and its error.
        for bad in [
            "Not A Reference",
            "app:tag@sha256:12",
            "",
            "app:",
            "[::1]:5000/app:v2",
        ] {
            let e = format!("{:#}", reference_of(bad).unwrap_err());
            assert!(e.contains("is not an image reference"), "{bad}: {e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn generated_references_split_as_oci_spec_splits_them(
            domain in proptest::option::of(
                "(localhost|[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?(\\.[a-z0-9]{1,5}){0,2})(:[0-9]{1,5})?"
            ),
            path in "[a-z0-9]{1,6}([._-][a-z0-9]{1,4}){0,2}(/[a-z0-9]{1,6}([._]|__|-{1,2})?[a-z0-9]{0,3}){0,3}",
            tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        ) {
            let mut image = domain.map(|d| format!("{d}/")).unwrap_or_default();
            image.push_str(&path);
            if let Some(t) = tag {
                image.push(':');
                image.push_str(&t);
            }
            // Only what the grammar takes: render refused the rest.
            if let Ok(theirs) = image.parse::<Reference>() {
                let ours = reference_of(&image).unwrap();
                proptest::prop_assert_eq!(parts(&ours), parts(&theirs), "{}", image);
            }
        }
    }

    #[test]
    fn a_registry_that_is_down_fails_the_run_with_its_reason() {
        // A port nobody listens on, configured insecure: plain HTTP, refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut insecure = Insecure::default();
        insecure.hosts.insert(format!("127.0.0.1:{port}"));
        let r = registry(insecure, vec![]);
        let image = format!("127.0.0.1:{port}/app:latest");
        let e = format!(
            "{:#}",
            r.resolve_all(std::slice::from_ref(&image), &|_, _| {})
                .unwrap_err()
        );
        assert!(
            e.contains(&format!("cannot resolve {image} in its registry")),
            "{e}"
        );
        assert!(e.to_lowercase().contains("refused"), "{e}");
        let e = format!(
            "{:#}",
            r.resolve_all(&["Not A Reference".to_owned()], &|_, _| {})
                .unwrap_err()
        );
        assert!(e.contains("is not an image reference"), "{e}");

        // podman: a short name is asked where its alias points (this
        // registry, refused), not at Docker Hub.
        let mut r = r;
        r.short_names = Some(ShortNames {
            aliases: [("app".to_owned(), format!("127.0.0.1:{port}/app"))].into(),
            search: vec![],
        });
        let e = format!(
            "{:#}",
            r.resolve_all(&["app:v1".to_owned()], &|_, _| {})
                .unwrap_err()
        );
        assert!(
            e.contains("cannot resolve app:v1 in its registry")
                && e.to_lowercase().contains("refused"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            r.resolve_all(&["nginx".to_owned()], &|_, _| {})
                .unwrap_err()
        );
        assert!(
            e.contains("podman cannot resolve the short name nginx"),
            "{e}"
        );

        // A name registries.conf made is checked: an alias out of the
        // repository grammar is an error naming registries.conf.
        r.short_names = Some(ShortNames {
            aliases: [("app".to_owned(), "../../etc".to_owned())].into(),
            search: vec![],
        });
        let e = format!(
            "{:#}",
            r.resolve_all(&["app:v1".to_owned()], &|_, _| {})
                .unwrap_err()
        );
        assert!(
            e.contains(
                "registries.conf sends app:v1 to ../../etc:v1, which is not an image reference"
            ),
            "{e}"
        );

        // A mirror is asked first, then the location; each one's reason.
        let mirror = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        r.insecure.hosts.insert(format!("127.0.0.1:{mirror}"));
        r.sources = vec![Source {
            prefix: format!("127.0.0.1:{port}/team"),
            location: None,
            mirrors: vec![format!("127.0.0.1:{mirror}/cache")],
        }];
        let image = format!("127.0.0.1:{port}/team/app:v1");
        let e = format!(
            "{:#}",
            r.resolve_all(std::slice::from_ref(&image), &|_, _| {})
                .unwrap_err()
        );
        let (m, l) = (
            e.find(&format!("127.0.0.1:{mirror}/cache/app:v1: ")),
            e.find(&format!("; 127.0.0.1:{port}/team/app:v1: ")),
        );
        assert!(m.is_some() && l.is_some() && m < l, "{e}");

        // A short name under each search registry, in order.
        r.sources = Vec::new();
        r.short_names = Some(ShortNames {
            aliases: BTreeMap::new(),
            search: vec![format!("127.0.0.1:{port}"), format!("127.0.0.1:{mirror}")],
        });
        let e = format!(
            "{:#}",
            r.resolve_all(&["team/app:v2".to_owned()], &|_, _| {})
                .unwrap_err()
        );
        let (first, second) = (
            e.find(&format!("127.0.0.1:{port}/team/app:v2: ")),
            e.find(&format!("; 127.0.0.1:{mirror}/team/app:v2: ")),
        );
        assert!(
            e.contains("cannot resolve team/app:v2 in its registry")
                && first.is_some()
                && second.is_some()
                && first < second,
            "{e}"
        );
    }
}
