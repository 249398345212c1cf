//! What a person sees when something fails: one line, `error: ...`, never a Rust debug dump.
//! kube's own Display of an API error embeds the Debug of the whole Status, so API errors are
//! taken apart here and only the API server's message is shown; it already names the object,
//! the user and the verb (`approvals.hitl.dev "x" is forbidden: User "bob" cannot patch ...`),
//! or the admission policy and its message.

use kube::core::Status;

/// The API server's answer inside `err`, if it answered.
pub fn api_status(err: &anyhow::Error) -> Option<&Status> {
    err.chain().find_map(|cause| match cause.downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(status)) => Some(status.as_ref()),
        _ => None,
    })
}

/// Says which server could not be reached when the API server did not answer at all.
pub fn unreachable(err: anyhow::Error, server: &str) -> anyhow::Error {
    let transport = err
        .chain()
        .any(|c| matches!(c.downcast_ref::<kube::Error>(), Some(kube::Error::Service(_) | kube::Error::HyperError(_))));
    if transport { err.context(format!("cannot reach the API server at {server}")) } else { err }
}

/// Whether `err` is the API server's "not found".
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

/// Whether `err` is the API server's "forbidden".
pub fn is_forbidden(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 403)
}

/// One line for `err`: the API server's message when it answered, else each cause's Display
/// joined by ": " (as `anyhow`'s alternate form does).
pub fn one_line(err: &anyhow::Error) -> String {
    let text = match api_status(err) {
        Some(status) if !status.message.is_empty() => status.message.clone(),
        Some(status) => format!("the server answered {} {}", status.code, status.reason),
        None => causes(err),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Each cause once: many errors already end with their source's text, which anyhow's `{:#}`
/// would repeat.
fn causes(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain().map(|c| c.to_string()) {
        // kube names its error variant first; a person needs the cause, not the variant.
        let cause = ["ServiceError: ", "HyperError: "]
            .iter()
            .fold(cause, |c, p| c.strip_prefix(p).map(str::to_string).unwrap_or(c));
        if !text.contains(&cause) {
            text += &if text.is_empty() { cause } else { format!(": {cause}") };
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, message: &str) -> anyhow::Error {
        let status = Status { code, message: message.into(), reason: "Forbidden".into(), ..Default::default() };
        anyhow::Error::from(kube::Error::Api(Box::new(status)))
    }

    #[test]
    fn an_api_error_is_the_servers_message_and_nothing_else() {
        let msg = r#"approvals.hitl.dev "x" is forbidden: User "bob" cannot patch resource "approvals""#;
        let err = api(403, msg).context("deciding x");
        assert_eq!(one_line(&err), msg);
        // What kube's own Display would have printed: the Debug of the Status.
        assert!(kube::Error::Api(Box::default()).to_string().contains("Status {"));
    }

    #[test]
    fn an_answer_without_a_message_says_the_code() {
        assert_eq!(one_line(&api(500, "")), "the server answered 500 Forbidden");
    }

    #[test]
    fn other_errors_keep_their_causes_on_one_line() {
        let io = std::io::Error::other("connection refused\n(os error 111)");
        let err = anyhow::Error::from(io).context("cannot reach the API server");
        assert_eq!(one_line(&err), "cannot reach the API server: connection refused (os error 111)");
        let repeated = anyhow::anyhow!("root cause").context("reading x: root cause");
        assert_eq!(one_line(&repeated), "reading x: root cause");
    }
}
