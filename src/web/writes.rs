//! The day-two API (SPEC §15): silences and acknowledgements. Every write needs a token
//! (see `auth`), is logged, and is stored with the token's name in the audit log.

use super::auth::{authorize_read, authorize_write};
use super::{AppState, Error};
use crate::clock::now_ms;
use crate::silence::SilenceRequest;
use crate::store::{Acked, Expired};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/silences", get(list).post(add))
        .route("/api/v1/silences/{id}", axum::routing::delete(expire))
        .route("/api/v1/incidents/{id}/ack", post(ack))
        .route("/api/v1/agents/{location}", axum::routing::delete(retire))
}

/// The body as JSON, with a 400 that says what is wrong.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("invalid body: {e}")))
}

fn id_of(raw: &str, what: &str) -> Result<i64, Error> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| Error::BadRequest(format!("invalid {what} id {raw:?}")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    all: bool,
}

async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Error> {
    authorize_read(&state.config(), &headers)?;
    let all = query.map_err(|e| Error::BadRequest(e.body_text()))?.0.all;
    let silences = state.store.silences(now_ms(), all).await?;
    Ok(Json(serde_json::json!({ "silences": silences })).into_response())
}

async fn add(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    let actor = authorize_write(&state.config(), &headers, true)?;
    let request: SilenceRequest = parse(&body)?;
    let now = now_ms();
    let new = request.into_new(now).map_err(Error::BadRequest)?;
    let silence = state.store.add_silence(&new, &actor, now).await?;
    tracing::info!(actor = %actor, id = silence.id, target = %silence.target, category = %silence.category, "silence added");
    Ok((StatusCode::CREATED, Json(silence)).into_response())
}

async fn expire(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let actor = authorize_write(&state.config(), &headers, false)?;
    let id = id_of(&id, "silence")?;
    match state.store.expire_silence(id, &actor, now_ms()).await? {
        Expired::Expired(s) => {
            tracing::info!(actor = %actor, id, "silence expired");
            Ok(Json(s).into_response())
        }
        Expired::AlreadyEnded(s) => Ok(Json(s).into_response()),
        Expired::NotFound => Err(Error::NotFound(format!("no silence {id}"))),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    comment: Option<String>,
}

async fn ack(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    let actor = authorize_write(&state.config(), &headers, !body.is_empty())?;
    let id = id_of(&id, "incident")?;
    let request: AckRequest = if body.is_empty() {
        AckRequest::default()
    } else {
        parse(&body)?
    };
    let comment = request
        .comment
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if let Some(c) = comment {
        crate::silence::check_comment(c).map_err(Error::BadRequest)?;
    }
    match state
        .store
        .ack_incident(id, &actor, comment, now_ms())
        .await?
    {
        Acked::Acked(row) => {
            tracing::info!(actor = %actor, incident = id, "incident acknowledged");
            Ok(Json(serde_json::json!({ "incident": row })).into_response())
        }
        Acked::Resolved(_) => Err(Error::Conflict(format!("incident {id} is resolved"))),
        Acked::NotFound => Err(Error::NotFound(format!("no incident {id}"))),
    }
}

/// `DELETE /api/v1/agents/{location}`: retires a removed or renamed agent's location.
async fn retire(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(location): Path<String>,
) -> Result<Response, Error> {
    let config = state.config();
    let actor = authorize_write(&config, &headers, false)?;
    let shown: String = location.chars().take(64).collect();
    match state
        .store
        .retire_location(&location, &actor, &crate::notify::routing(&config))
        .await?
    {
        retired @ crate::store::Retired::Retired { .. } => {
            tracing::info!(actor = %actor, location = %shown, "location retired");
            Ok(Json(retired).into_response())
        }
        crate::store::Retired::Live { .. } => Err(Error::Conflict(format!(
            "the agent at {shown:?} is running (its heartbeat is recent): stop it first"
        ))),
        crate::store::Retired::Unknown => Err(Error::NotFound(format!(
            "no agent or sighting at {shown:?}"
        ))),
    }
}
