//! Tokens: a control token (every route) and a read token (GET only),
//! compared in constant time. Only TCP clients present one: the unix
//! socket's file mode and group already decide who may connect.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::routes::{Api, error};

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Unix,
    Tcp,
}

#[derive(Debug, Default)]
pub struct Tokens {
    /// May call every route.
    pub control: Option<Vec<u8>>,
    /// May call GET routes only.
    pub read: Option<Vec<u8>>,
}

impl Tokens {
    /// Read the token files (a trailing newline is not part of a token).
    pub fn load(control: Option<&Path>, read: Option<&Path>) -> Result<Self> {
        Ok(Tokens {
            control: control.map(read_token).transpose()?,
            read: read.map(read_token).transpose()?,
        })
    }
}

fn read_token(path: &Path) -> Result<Vec<u8>> {
    let text = fs_err::read_to_string(path).context("reading a token file")?;
    let token = text.trim_end_matches(['\n', '\r']);
    if token.len() < 16 {
        return Err(crate::error::UsageError(format!(
            "{}: a token must be at least 16 characters; write a random one, e.g. \
             `openssl rand -hex 32 > {}`",
            path.display(),
            path.display()
        ))
        .into());
    }
    Ok(token.as_bytes().to_vec())
}

/// What a presented token allows.
#[derive(Debug, PartialEq, Eq)]
enum Grant {
    None,
    Read,
    Control,
}

fn matches(given: &[u8], want: Option<&Vec<u8>>) -> bool {
    want.is_some_and(|w| bool::from(given.ct_eq(w)))
}

fn grant(tokens: &Tokens, req: &Request) -> Grant {
    let Some(given) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().as_bytes())
    else {
        return Grant::None;
    };
    if matches(given, tokens.control.as_ref()) {
        Grant::Control
    } else if matches(given, tokens.read.as_ref()) {
        Grant::Read
    } else {
        Grant::None
    }
}

/// Routes anyone who reaches the listener may call.
fn public(path: &str) -> bool {
    path == "/health" || path == "/"
}

/// The token check in front of every route.
pub async fn check(
    State((api, transport)): State<(Arc<Api>, Transport)>,
    req: Request,
    next: Next,
) -> Response {
    if transport == Transport::Unix || public(req.uri().path()) {
        return next.run(req).await;
    }
    let reading = matches!(*req.method(), Method::GET | Method::HEAD);
    match grant(&api.tokens, &req) {
        Grant::Control => next.run(req).await,
        Grant::Read if reading => next.run(req).await,
        Grant::Read => error(
            StatusCode::FORBIDDEN,
            "The read-only token cannot change containers; use the control token",
        ),
        Grant::None => {
            let mut resp = error(
                StatusCode::UNAUTHORIZED,
                "Missing or wrong token: send Authorization: Bearer <token>",
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"nixarr-units\""),
            );
            resp.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_grant_by_kind() {
        let t = Tokens {
            control: Some(b"control-token-0123456789".to_vec()),
            read: Some(b"read-token-0123456789".to_vec()),
        };
        let req = |v: &str| {
            Request::builder()
                .header(header::AUTHORIZATION, v)
                .body(axum::body::Body::empty())
                .expect("request")
        };
        assert_eq!(
            grant(&t, &req("Bearer control-token-0123456789")),
            Grant::Control
        );
        assert_eq!(grant(&t, &req("Bearer read-token-0123456789")), Grant::Read);
        assert_eq!(grant(&t, &req("Bearer read-token-012345678")), Grant::None);
        assert_eq!(grant(&t, &req("Basic read-token-0123456789")), Grant::None);
        assert_eq!(grant(&Tokens::default(), &req("Bearer ")), Grant::None);
    }
}
