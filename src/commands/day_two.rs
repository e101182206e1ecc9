//! `silence add|list|expire` and `ack` (SPEC §15): straight into the database of the config
//! (made if missing; also while the daemon runs, which reads silences at every pass), or
//! through a running daemon's API with `--url` and the token in `$OPENAI_WATCH_TOKEN`.

use super::Exit;
use crate::cli::{Remote, SilenceCommand};
use crate::clock::now_ms;
use crate::config::Document;
use crate::silence::{Silence, SilenceRequest};
use crate::store::{Acked, Expired, IncidentRow, Retired, Store};
use crate::timefmt::rfc3339;
use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use std::io::Write;

/// The environment variable `--url` reads the dashboard token from.
pub const TOKEN_ENV: &str = "OPENAI_WATCH_TOKEN";

/// Where the writes go.
enum Backend {
    Database(Store),
    Api {
        client: reqwest::Client,
        base: reqwest::Url,
        token: SecretString,
    },
}

/// Who writes through the database directly: the local user.
fn local_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

impl Backend {
    async fn open(
        doc: impl FnOnce() -> Result<Document, Exit>,
        remote: &Remote,
    ) -> Result<Backend, Exit> {
        let Some(url) = &remote.url else {
            let doc = doc()?;
            let database = doc.database().map_err(|e| {
                eprintln!("{e}");
                Exit::Config
            })?;
            return Store::connect(&database)
                .await
                .map(Backend::Database)
                .map_err(|e| {
                    super::print_error(format_args!("{e}"));
                    Exit::Failure
                });
        };
        let fail = |msg: String| {
            super::print_error(format_args!("{msg}"));
            Exit::Usage
        };
        let base = crate::config::parse_dashboard_url(url).map_err(fail)?;
        let token = std::env::var(TOKEN_ENV)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail(format!("--url needs the dashboard token in ${TOKEN_ENV}")))?;
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("openai-watch/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| fail(format!("cannot build the HTTP client: {e}")))?;
        Ok(Backend::Api {
            client,
            base,
            token: SecretString::from(token),
        })
    }

    /// One API call: the JSON answer, or the API's error as one line.
    async fn call(
        client: &reqwest::Client,
        base: &reqwest::Url,
        token: &SecretString,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let url = base.join(path).context("invalid URL")?;
        let mut request = client
            .request(method, url.clone())
            .bearer_auth(token.expose_secret());
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let bytes = response.bytes().await.context("cannot read the answer")?;
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        if !status.is_success() {
            let error = json["error"].as_str().unwrap_or("no error message");
            bail!("{url} answered {status}: {error}");
        }
        Ok(json)
    }

    async fn add(&self, request: SilenceRequest) -> anyhow::Result<Silence> {
        match self {
            Backend::Database(store) => {
                let now = now_ms();
                let new = request.into_new(now).map_err(anyhow::Error::msg)?;
                Ok(store.add_silence(&new, &local_actor(), now).await?)
            }
            Backend::Api {
                client,
                base,
                token,
            } => {
                let body = serde_json::to_value(&request)?;
                let json = Self::call(
                    client,
                    base,
                    token,
                    reqwest::Method::POST,
                    "api/v1/silences",
                    Some(body),
                )
                .await?;
                Ok(serde_json::from_value(json)?)
            }
        }
    }

    async fn list(&self, all: bool) -> anyhow::Result<Vec<Silence>> {
        match self {
            Backend::Database(store) => Ok(store.silences(now_ms(), all).await?),
            Backend::Api {
                client,
                base,
                token,
            } => {
                let path = if all {
                    "api/v1/silences?all=true"
                } else {
                    "api/v1/silences"
                };
                let json =
                    Self::call(client, base, token, reqwest::Method::GET, path, None).await?;
                Ok(serde_json::from_value(json["silences"].clone())?)
            }
        }
    }

    async fn expire(&self, id: i64) -> anyhow::Result<Option<Silence>> {
        match self {
            Backend::Database(store) => Ok(
                match store.expire_silence(id, &local_actor(), now_ms()).await? {
                    Expired::Expired(s) | Expired::AlreadyEnded(s) => Some(s),
                    Expired::NotFound => None,
                },
            ),
            Backend::Api {
                client,
                base,
                token,
            } => {
                let path = format!("api/v1/silences/{id}");
                let json =
                    Self::call(client, base, token, reqwest::Method::DELETE, &path, None).await?;
                Ok(Some(serde_json::from_value(json)?))
            }
        }
    }

    async fn ack(&self, id: i64, comment: Option<&str>) -> anyhow::Result<IncidentRow> {
        match self {
            Backend::Database(store) => match store
                .ack_incident(id, &local_actor(), comment, now_ms())
                .await?
            {
                Acked::Acked(row) => Ok(row),
                Acked::Resolved(_) => bail!("incident {id} is resolved"),
                Acked::NotFound => bail!("no incident {id}"),
            },
            Backend::Api {
                client,
                base,
                token,
            } => {
                let path = format!("api/v1/incidents/{id}/ack");
                let body = serde_json::json!({ "comment": comment });
                let json = Self::call(
                    client,
                    base,
                    token,
                    reqwest::Method::POST,
                    &path,
                    Some(body),
                )
                .await?;
                Ok(serde_json::from_value(json["incident"].clone())?)
            }
        }
    }
}

/// One line per silence.
pub fn describe(s: &Silence) -> String {
    format!(
        "{:>4}  target {} category {} error {} location {}  {} to {}  by {}: {}{}",
        s.id,
        s.target,
        s.category,
        s.error_id,
        s.location,
        rfc3339(s.starts_at_ms),
        rfc3339(s.ends_at_ms),
        s.created_by,
        // Written before comments were checked, a row may hold control characters: never
        // sent raw to a terminal.
        crate::redact::clean_message(&s.comment, &[]),
        if s.expired_at_ms.is_some() {
            " (expired)"
        } else {
            ""
        }
    )
}

pub async fn silence(
    doc: impl FnOnce() -> Result<Document, Exit>,
    command: &SilenceCommand,
    out: &mut impl Write,
) -> anyhow::Result<Exit> {
    let remote = match command {
        SilenceCommand::Add { remote, .. }
        | SilenceCommand::List { remote, .. }
        | SilenceCommand::Expire { remote, .. } => remote,
    };
    let backend = match Backend::open(doc, remote).await {
        Ok(b) => b,
        Err(exit) => return Ok(exit),
    };
    match command {
        SilenceCommand::Add {
            target,
            category,
            error_id,
            location,
            duration,
            until,
            start,
            comment,
            ..
        } => {
            let request = SilenceRequest {
                target: target.clone(),
                category: category.clone(),
                error_id: error_id.clone(),
                location: location.clone(),
                starts_at: start.clone(),
                ends_at: until.clone(),
                duration: duration.clone(),
                comment: comment.clone(),
            };
            // Checked here too, so that a bad value is a usage error either way.
            if let Err(e) = request.clone().into_new(now_ms()) {
                super::print_error(format_args!("{e}"));
                return Ok(Exit::Usage);
            }
            let s = backend.add(request).await?;
            writeln!(out, "silence {} added", s.id)?;
            writeln!(out, "{}", describe(&s))?;
        }
        SilenceCommand::List { all, json, .. } => {
            let list = backend.list(*all).await?;
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else if list.is_empty() {
                writeln!(out, "no silences")?;
            } else {
                for s in &list {
                    writeln!(out, "{}", describe(s))?;
                }
            }
        }
        SilenceCommand::Expire { id, .. } => match backend.expire(*id).await? {
            Some(s) => writeln!(out, "silence {} ends {}", s.id, rfc3339(s.ends_at_ms))?,
            None => bail!("no silence {id}"),
        },
    }
    Ok(Exit::Success)
}

pub async fn ack(
    doc: impl FnOnce() -> Result<Document, Exit>,
    incident: i64,
    comment: Option<&str>,
    remote: &Remote,
    out: &mut impl Write,
) -> anyhow::Result<Exit> {
    let backend = match Backend::open(doc, remote).await {
        Ok(b) => b,
        Err(exit) => return Ok(exit),
    };
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    if let Some(c) = comment
        && let Err(why) = crate::silence::check_comment(c)
    {
        super::print_error(format_args!("--comment: {why}"));
        return Ok(Exit::Usage);
    }
    let row = backend.ack(incident, comment).await?;
    writeln!(
        out,
        "incident {} ({} {}) {}",
        row.id,
        row.target,
        row.category,
        crate::notify::message::acknowledgement(&row).unwrap_or_else(|| "acknowledged".into())
    )?;
    Ok(Exit::Success)
}

/// `agent retire LOCATION`: through the database of the config (its secrets are read, for
/// the alert routing), or through a running daemon's API with `--url`.
pub async fn retire(
    doc: impl FnOnce() -> Result<Document, Exit>,
    location: &str,
    remote: &Remote,
    out: &mut impl Write,
) -> anyhow::Result<Exit> {
    let retired = if remote.url.is_some() {
        let backend = match Backend::open(doc, remote).await {
            Ok(b) => b,
            Err(exit) => return Ok(exit),
        };
        let Backend::Api {
            client,
            base,
            token,
        } = &backend
        else {
            bail!("--url names no API");
        };
        let path = format!(
            "api/v1/agents/{}",
            percent_encoding::utf8_percent_encode(location, percent_encoding::NON_ALPHANUMERIC)
        );
        let json = Backend::call(client, base, token, reqwest::Method::DELETE, &path, None).await?;
        serde_json::from_value(json)?
    } else {
        let config = match doc().map(|d| d.resolve()) {
            Ok(Ok(config)) => config,
            Ok(Err(e)) => {
                super::print_error(format_args!("{e}"));
                return Ok(Exit::Config);
            }
            Err(exit) => return Ok(exit),
        };
        let store = Store::connect(&config.database).await?;
        let retired = store
            .retire_location(location, &local_actor(), &crate::notify::routing(&config))
            .await?;
        store.close().await;
        retired
    };
    match retired {
        Retired::Retired { location, resolved } => {
            writeln!(
                out,
                "location {location} retired; incidents resolved: {}",
                if resolved.is_empty() {
                    "none".to_string()
                } else {
                    resolved
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )?;
            Ok(Exit::Success)
        }
        Retired::Live { location, .. } => {
            super::print_error(format_args!(
                "the agent at {location:?} is running (its heartbeat is recent): stop it first"
            ));
            Ok(Exit::TempFail)
        }
        Retired::Unknown => {
            super::print_error(format_args!("no agent or sighting at {location:?}"));
            Ok(Exit::Failure)
        }
    }
}
