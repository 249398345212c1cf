//! What the API server's refusal of a request means to the operator: the one place that reads an
//! API error's code, reason and (where Kubernetes says it nowhere else) its message.
//!
//! Kubernetes answers several different things with the same `403 Forbidden`: RBAC refusing the
//! operator, an exceeded ResourceQuota, Pod Security, a webhook. Only the message tells them apart,
//! so the few phrases read here are the API server's own, named and tested below, and nowhere else.

use kube::core::Status;

/// The kinds of refusal the operator acts on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// RBAC refused the operator (`User "…" cannot create resource "pods" …`), or the Pod's
    /// ServiceAccount does not exist yet: granting the right or waiting fixes it.
    MissingRight,
    /// A ResourceQuota is used up: it clears once other objects go.
    QuotaExceeded,
    /// The object is larger than the API server stores (413, or etcd's request limit).
    TooLarge,
    /// This object is refused as it is: invalid (400/422) or denied by admission (403: Pod
    /// Security, a policy, a webhook). Sending it again will not help.
    ThisObject,
    /// 404.
    NotFound,
    /// 409: someone else wrote first, or the name is taken.
    Conflict,
    /// Anything else: a server or transport problem, worth retrying.
    Other,
}

/// The API server's phrases that tell one `403 Forbidden` from another.
const RBAC_DENIED: &str = " cannot ";
const NO_SERVICE_ACCOUNT: &str = "error looking up service account";
const QUOTA_EXCEEDED: &str = "exceeded quota";
/// etcd's own limit comes back as a 500 whose message says so.
const TOO_LARGE: &str = "too large";

/// What the API server's answer means.
pub fn of_status(status: &Status) -> Refusal {
    let said = |phrase: &str| status.message.contains(phrase);
    match status.code {
        413 => Refusal::TooLarge,
        403 if said(RBAC_DENIED) || said(NO_SERVICE_ACCOUNT) => Refusal::MissingRight,
        403 if said(QUOTA_EXCEEDED) => Refusal::QuotaExceeded,
        400 | 403 | 422 => Refusal::ThisObject,
        404 => Refusal::NotFound,
        409 => Refusal::Conflict,
        _ if said(TOO_LARGE) => Refusal::TooLarge,
        _ => Refusal::Other,
    }
}

/// What a failed request means; errors without an API answer (transport, decoding) are `Other`.
pub fn of_error(error: &kube::Error) -> Refusal {
    match error {
        kube::Error::Api(status) => of_status(status),
        _ => Refusal::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> Status {
        let mut s = Status::failure(message, reason);
        s.code = code;
        s
    }

    /// Messages as a v1.37 API server words them.
    #[test]
    fn the_api_servers_answers_are_told_apart() {
        let cases = [
            (
                403,
                "Forbidden",
                r#"pods "a" is forbidden: User "system:serviceaccount:hitl-system:hitl-operator" cannot create resource "pods" in API group "" in the namespace "team""#,
                Refusal::MissingRight,
            ),
            (
                403,
                "Forbidden",
                r#"pods "a" is forbidden: error looking up service account team/builder: serviceaccount "builder" not found"#,
                Refusal::MissingRight,
            ),
            (
                403,
                "Forbidden",
                r#"pods "a" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2"#,
                Refusal::QuotaExceeded,
            ),
            (
                403,
                "Forbidden",
                r#"pods "a" is forbidden: violates PodSecurity "restricted:latest": privileged"#,
                Refusal::ThisObject,
            ),
            (422, "Invalid", r#"Pod "a" is invalid: spec.containers[0].image: Required value"#, Refusal::ThisObject),
            (400, "BadRequest", "the object provided is unrecognized", Refusal::ThisObject),
            (413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728", Refusal::TooLarge),
            (500, "InternalError", "etcdserver: request is too large", Refusal::TooLarge),
            (404, "NotFound", r#"approvals.hitl.dev "g" not found"#, Refusal::NotFound),
            (
                409,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version and try again",
                Refusal::Conflict,
            ),
            (409, "AlreadyExists", r#"pods "a" already exists"#, Refusal::Conflict),
            (500, "InternalError", "Internal error occurred: resource quota evaluation timed out", Refusal::Other),
            (429, "TooManyRequests", "the server has received too many requests", Refusal::Other),
        ];
        for (code, reason, message, expected) in cases {
            assert_eq!(of_status(&status(code, reason, message)), expected, "{code} {message}");
        }
    }

    #[test]
    fn an_error_without_an_answer_is_other() {
        let error = kube::Error::LinesCodecMaxLineLengthExceeded;
        assert_eq!(of_error(&error), Refusal::Other);
    }
}
