//! What the server answers: JSON documents, and failures as the API server's own `Status`
//! objects, so that kubectl and the plugin print their message as they print any API error.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::GROUP;

/// `body` as JSON.
pub fn json(code: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (code, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => Failure::internal(format!("encoding the answer failed: {e}")).into_response(),
    }
}

/// A request refused or failed.
#[derive(Debug, PartialEq)]
pub struct Failure {
    pub code: StatusCode,
    /// Kubernetes' StatusReason for `code`.
    pub reason: &'static str,
    pub message: String,
}

impl Failure {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into() }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    /// A database error as a reader sees it: a database that cannot be reached is 503 (try
    /// again later), anything else 500. The database's own words go to the operator's log only:
    /// they may name its host and role.
    pub fn database(e: &sqlx::Error) -> Self {
        tracing::warn!(error = %e, "reading the decision archive");
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => {
                Self::unavailable("the decision archive's database cannot be reached; try again later")
            }
            _ => Self::internal("reading the decision archive failed; the operator's log says why"),
        }
    }

    /// The Status document. `details.group` names this API, so a client tells the archive's own
    /// answers from the API server's (which, for this group, mean it is not registered or down).
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": {"group": GROUP, "kind": "records"},
            "code": self.code.as_u16(),
        })
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        json(self.code, &self.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_a_kubernetes_status_naming_this_group() {
        let status = Failure::unauthorized("no client certificate").status();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["code"], 401);
        assert_eq!(status["reason"], "Unauthorized");
        assert_eq!(status["message"], "no client certificate");
        assert_eq!(status["details"]["group"], "archive.hitl.dev");
    }

    #[test]
    fn a_database_out_of_reach_is_unavailable_and_says_nothing_of_it() {
        let down = Failure::database(&sqlx::Error::PoolTimedOut);
        assert_eq!(down.code, StatusCode::SERVICE_UNAVAILABLE);
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "10.0.0.9:5432 refused");
        let io = Failure::database(&sqlx::Error::Io(refused));
        assert_eq!(io.code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!io.message.contains("10.0.0.9"), "{}", io.message);
        let other = Failure::database(&sqlx::Error::RowNotFound);
        assert_eq!(other.code, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
