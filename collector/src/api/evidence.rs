//! `/evidence/*`: what the evidence log proves, for analysts and auditors — a finding's
//! bundle (entries, inclusion proofs, a signed checkpoint, the public key), the signed
//! checkpoints, and consistency proofs between two of them.

use std::sync::Arc;

use axum::{
    Extension, Json,
    extract::{Path, Query, State},
    http::header,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;
use tidegate_evidence::{EvidenceLog, bundle::Bundle, bundle::BundleError};

use super::{AppState, auth::Principal, error::ApiError};

fn log(s: &AppState) -> Result<Arc<EvidenceLog>, ApiError> {
    s.evidence
        .clone()
        .ok_or_else(|| ApiError::NotFound("evidence log (no [evidence] section)".into()))
}

/// A finding id as the log stores them: 1 to 128 of `A-Z a-z 0-9 - _ .`.
fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(ApiError::param("id", "1 to 128 of A-Z a-z 0-9 - _ ."));
    }
    Ok(())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::NotFound(format!("evidence ({e})"))
}

/// Query of `/evidence/bundle/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleQuery {
    /// Prove against checkpoint number K (0 = oldest) instead of a new one.
    checkpoint: Option<usize>,
}

/// Evidence log scans (finding an id reads the whole log) running at once, at most: the
/// badge and the bundle of many findings, asked for together, queue rather than read
/// the disk in parallel.
static SCANS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// `GET /evidence/bundle/{id}`: the bundle of alert or violation `id` as a download.
pub async fn bundle(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<BundleQuery>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    super::scope::check_finding(&s, &who, &id).await?;
    let log = log(&s)?;
    let name = id.clone();
    // Held by the scan itself: a client that goes away does not free it early.
    let scan = SCANS.acquire().await.map_err(internal)?;
    let b = tokio::task::spawn_blocking(move || {
        let _scan = scan;
        Bundle::build(&log, &id, q.checkpoint)
    })
    .await
    .map_err(internal)?
    .map_err(|e| match e {
        BundleError::Unknown(id) => ApiError::NotFound(format!("evidence of {id:?}")),
        BundleError::Checkpoint(k) => ApiError::param(
            "checkpoint",
            format!("checkpoint {k} does not exist or predates the finding"),
        ),
        BundleError::Log(e) => internal(e),
    })?;
    let body = serde_json::to_vec_pretty(&b)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"evidence-{name}.json\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// `GET /evidence/status/{id}`: whether an alert or violation is in the evidence log and
/// proven by the newest signed checkpoint (the console's badge). Signs nothing.
pub async fn status(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_id(&id)?;
    super::scope::check_finding(&s, &who, &id).await?;
    let log = log(&s)?;
    let l = log.clone();
    let key = log.verifying_key();
    let (q, logged) = {
        let id = id.clone();
        let scan = SCANS.acquire().await.map_err(internal)?;
        tokio::task::spawn_blocking(move || {
            let _scan = scan;
            let logged = l.find(&id).map(|v| v.len()).unwrap_or(0);
            (Bundle::latest(&l, &id), logged)
        })
        .await
        .map_err(internal)?
    };
    let body = match q {
        Err(BundleError::Unknown(_)) => json!({"id": id, "logged": 0, "status": "not_logged"}),
        Err(e) => return Err(internal(e)),
        Ok(None) => json!({"id": id, "logged": logged, "status": "pending_checkpoint"}),
        Ok(Some(b)) => match b.verify(Some(&key)) {
            Ok(c) => json!({
                "id": id, "logged": logged, "status": "verified",
                "proven": b.entries.len(),
                "indexes": b.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
                "checkpoint_size": c.size,
                "checkpoint_time_ns": b.checkpoint.time_ns,
                "origin": c.origin,
            }),
            Err(reason) => {
                json!({"id": id, "logged": logged, "status": "failed", "reason": reason})
            }
        },
    };
    Ok(Json(body))
}

/// `GET /evidence/checkpoints`: every signed checkpoint, oldest first, with the public
/// key they verify with.
pub async fn checkpoints(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let log = log(&s)?;
    let l = log.clone();
    let list = tokio::task::spawn_blocking(move || l.checkpoints())
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let key = log.verifying_key();
    Ok(Json(json!({
        "origin": log.origin(),
        "entries": log.len(),
        "public_key_pem": tidegate_evidence::key::public_pem(&key),
        "verifier_key": tidegate_evidence::note::verifier_key(log.origin(), &key),
        "checkpoints": list,
    })))
}

/// Query of `/evidence/consistency`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    /// Size of the older tree.
    old: u64,
    /// Size of the newer tree.
    new: u64,
}

/// `GET /evidence/consistency?old=M&new=N`: the RFC 9162 consistency proof from the tree
/// of M entries to the tree of N entries.
pub async fn consistency(
    State(s): State<AppState>,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let log = log(&s)?;
    let proof = log.consistency_proof(q.old, q.new).ok_or_else(|| {
        ApiError::param(
            "new",
            format!("need old <= new <= {} (the log's size)", log.len()),
        )
    })?;
    Ok(Json(json!({
        "old": q.old,
        "new": q.new,
        "proof": proof.iter().map(|h| tidegate_evidence::hex(h)).collect::<Vec<_>>(),
    })))
}
