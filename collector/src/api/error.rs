//! Errors of the JSON API, each with its HTTP status and a JSON body
//! `{"error": "...", "parameter": "..."}` (`parameter` only when one is at fault).

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};

/// What went wrong with an API request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No valid session cookie, token or basic credentials.
    #[error("authentication required: log in, or send Authorization: Bearer <token>")]
    Unauthenticated,
    /// A login with a wrong user name or password.
    #[error("wrong user name or password")]
    BadLogin,
    /// Too many failed logins from this address: wait before the next.
    #[error("too many failed logins from this address: retry in {0} s")]
    TooManyLogins(u64),
    /// A query or path parameter that is missing, unknown or malformed.
    #[error("parameter {param}: {msg}")]
    BadParam {
        /// The parameter's name.
        param: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A request body that is not what the endpoint takes.
    #[error("request body: {0}")]
    BadBody(String),
    /// No such alert, violation or page.
    #[error("{0} not found")]
    NotFound(String),
    /// The principal's role does not allow the action.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// ClickHouse failed or is unreachable.
    #[error("storage: {0}")]
    Storage(#[from] clickhouse::error::Error),
    /// ClickHouse answered with something that is not the expected JSON.
    #[error("storage answered unexpected data: {0}")]
    Decode(#[from] serde_json::Error),
}

impl ApiError {
    /// A [`ApiError::BadParam`] for `param`.
    pub fn param(param: impl Into<String>, msg: impl Into<String>) -> Self {
        ApiError::BadParam {
            param: param.into(),
            msg: msg.into(),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated | ApiError::BadLogin => StatusCode::UNAUTHORIZED,
            ApiError::TooManyLogins(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BadParam { .. } | ApiError::BadBody(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Storage(_) | ApiError::Decode(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "API request failed");
        }
        // Storage errors are logged above with their detail; the client learns only
        // that storage failed (ClickHouse's messages describe the schema and server).
        let text = match &self {
            ApiError::Storage(_) | ApiError::Decode(_) => {
                "storage failed; the collector's log has the details".to_string()
            }
            _ => self.to_string(),
        };
        let mut body = serde_json::json!({ "error": text });
        if let ApiError::BadParam { param, .. } = &self {
            body["parameter"] = serde_json::Value::String(param.clone());
        }
        let mut resp = (status, Json(body)).into_response();
        if let ApiError::TooManyLogins(secs) = &self
            && let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"tidegate\""),
            );
        }
        resp
    }
}

/// Result of an API handler.
pub type ApiResult<T> = Result<T, ApiError>;
