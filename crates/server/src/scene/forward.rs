//! In a cluster every node serves every scene's routes: a call to a scene that runs on
//! another node (`lease`) is sent on to that node, with the caller's own token, and its
//! answer handed back, so a cockpit or a load balancer may use any node. The node that
//! runs the scene authenticates, authorises and audits the call as it would any other;
//! this node only checked that the caller is someone. A call sent on once is never sent
//! on again (header [`FORWARDED`]): a node that finds the scene gone answers 503 itself.
//! Event streams (`.../stream`) are not sent on: they are this node's own events.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ErrorCode;
use crate::{ApiError, AppState};

/// Marks a call one node sent on to another (its value: the sending node's id).
pub const FORWARDED: &str = "x-citybrain-forwarded-by";
/// On a call sent on: proof that a node of this hub sent it (`citybrain_gov::forwarding`).
pub const PROOF: &str = "x-citybrain-forward-proof";
/// On an answer sent on: the node that served it.
pub const SERVED_BY: &str = "x-citybrain-served-by";

/// The largest answer handed back.
const MAX_ANSWER: u64 = 256 << 20;

/// Middleware on the authenticated routes: sends a call to a scene that runs elsewhere
/// on to its node.
pub async fn forward(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Inside the API's nest the path has lost its `/api/v1` (and inside NGSI-LD's its
    // `/ngsi-ld/v1`, whose first segments are no scene's name).
    let path = request.uri().path();
    let scene = path
        .strip_prefix("/api/v1/")
        .or_else(|| path.strip_prefix('/'))
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    let holder = match state.scenes.elsewhere(scene) {
        Some(holder)
            if !request.headers().contains_key(FORWARDED) && !path.ends_with("/stream") =>
        {
            holder
        }
        _ => return next.run(request).await,
    };
    let scene = scene.to_string();
    let me = state.hub.node_id().unwrap_or_default().to_string();
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, state.body_limit).await {
        Ok(body) => body,
        Err(error) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BodyTooLarge,
                format!("the request body could not be read: {error}"),
            )
            .into_response();
        }
    };
    let asked = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let target = if asked.starts_with("/api/v1/") {
        format!("{}{asked}", holder.address)
    } else {
        format!("{}/api/v1{asked}", holder.address)
    };
    let mut outgoing = ureq::http::Request::builder()
        .method(parts.method.as_str())
        .uri(&target)
        .header(FORWARDED, me.as_str());
    // This node admitted the call against the caller's rate: the proof lets the serving
    // node skip its own count (the header alone is the caller's to forge).
    if let Some(authorization) = parts.headers.get(header::AUTHORIZATION) {
        let path = target
            .strip_prefix(holder.address.as_str())
            .unwrap_or(&target);
        let call = citybrain_gov::Forwarded {
            node: &me,
            method: parts.method.as_str(),
            path,
            authorization: authorization.as_bytes(),
        };
        let proof = state.gov.forwarding().proof(&call, unix_now());
        outgoing = outgoing.header(PROOF, proof);
    }
    for name in [
        header::AUTHORIZATION,
        header::CONTENT_TYPE,
        header::ACCEPT,
        header::ACCEPT_LANGUAGE,
    ] {
        if let Some(value) = parts.headers.get(&name) {
            outgoing = outgoing.header(name.as_str(), value.as_bytes());
        }
    }
    let sent = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let outgoing = outgoing.body(body.to_vec()).map_err(|e| e.to_string())?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut answer = agent.run(outgoing).map_err(|e| e.to_string())?;
        let status = answer.status().as_u16();
        let content_type = answer
            .headers()
            .get("content-type")
            .map(|v| v.as_bytes().to_vec());
        let body = answer
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec()
            .map_err(|e| e.to_string())?;
        Ok((status, content_type, body))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|sent| sent);
    match sent {
        Ok((status, content_type, body)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut response = (status, body).into_response();
            let headers = response.headers_mut();
            if let Some(value) = content_type.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
                headers.insert(header::CONTENT_TYPE, value);
            }
            if let Ok(value) = HeaderValue::from_str(&holder.node) {
                headers.insert(SERVED_BY, value);
            }
            response
        }
        Err(error) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::SceneUnavailable,
            format!(
                "the {scene} scene runs on node {} ({}) of this cluster, which did not answer: {error}",
                holder.node, holder.address
            ),
        )
        .into_response(),
    }
}

/// Seconds since the Unix epoch, as a forwarding proof counts them.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Whether `request` was sent on by a node of this hub, with a valid proof: the sending
/// node has already counted it against the caller's rate.
pub fn proven(state: &AppState, request: &axum::extract::Request) -> bool {
    let headers = request.headers();
    let (Some(node), Some(proof), Some(authorization)) = (
        headers.get(FORWARDED).and_then(|v| v.to_str().ok()),
        headers.get(PROOF).and_then(|v| v.to_str().ok()),
        headers.get(header::AUTHORIZATION),
    ) else {
        return false;
    };
    let path = request
        .uri()
        .path_and_query()
        .map_or(request.uri().path(), |p| p.as_str());
    let call = citybrain_gov::Forwarded {
        node,
        method: request.method().as_str(),
        path,
        authorization: authorization.as_bytes(),
    };
    state.gov.forwarding().check(proof, &call, unix_now())
}
