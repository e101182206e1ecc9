//! Tokens: with any configured, every page and read needs one; every write needs one in any
//! case, and comes from this site only (no cross-origin form posts).

use super::{AppState, Error};
use crate::config::Config;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use std::sync::Arc;

/// Compares in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The name of the token the request carries, as `Authorization: Bearer TOKEN` or HTTP basic
/// auth with TOKEN as the password.
fn token_name<'a>(config: &'a Config, headers: &HeaderMap) -> Option<&'a str> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Schemes are case-insensitive (RFC 7235 §2.1): `bearer` is `Bearer`.
    let (scheme, credentials) = given.split_once(' ').unwrap_or((given, ""));
    let presented: Vec<u8> = if scheme.eq_ignore_ascii_case("bearer") {
        credentials.trim().as_bytes().to_vec()
    } else if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(credentials.trim())
            .ok()?;
        let colon = raw.iter().position(|b| *b == b':')?;
        raw[colon + 1..].to_vec()
    } else {
        return None;
    };
    config
        .dashboard
        .tokens
        .iter()
        .find(|(_, t)| same_secret(&presented, t.expose_secret().as_bytes()))
        .map(|(name, _)| name.as_str())
}

/// Guards pages and reads when tokens are configured.
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let config = state.config();
    match authorize_read(&config, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// Reads need a token when any is configured.
pub fn authorize_read(config: &Config, headers: &HeaderMap) -> Result<(), Error> {
    if config.dashboard.tokens.is_empty() || token_name(config, headers).is_some() {
        Ok(())
    } else {
        Err(Error::Unauthorized)
    }
}

/// Who may write: the token's name. Refuses with 403 when no token is configured (writes
/// are never open) or when the request comes from another site, 401 without a valid token.
pub fn authorize_write(
    config: &Config,
    headers: &HeaderMap,
    has_body: bool,
) -> Result<String, Error> {
    if config.dashboard.tokens.is_empty() {
        return Err(Error::Forbidden(
            "writes need a dashboard token: configure [dashboard] auth_token_env or [[dashboard.tokens]]"
                .into(),
        ));
    }
    // A browser says where a request comes from; another site's form or script is refused
    // even when the browser would attach remembered basic-auth credentials.
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(Error::Forbidden(format!(
            "cross-site request refused ({site})"
        )));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let same = origin
            .split_once("://")
            .is_some_and(|(scheme, h)| matches!(scheme, "http" | "https") && h == host);
        if !same {
            return Err(Error::Forbidden(format!(
                "cross-origin request refused ({origin})"
            )));
        }
    }
    let name = token_name(config, headers).ok_or(Error::Unauthorized)?;
    // Only JSON bodies: a form cannot send them across origins without a preflight. A form
    // post with an empty body is still a form post: any content type given must be JSON.
    let content_type = headers.get(header::CONTENT_TYPE);
    let json = match content_type {
        None => !has_body,
        Some(ct) => ct.to_str().ok().is_some_and(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        }),
    };
    if !json {
        return Err(Error::UnsupportedMediaType(
            "send the body as application/json".into(),
        ));
    }
    Ok(name.to_string())
}
