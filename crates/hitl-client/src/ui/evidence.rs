//! The evidence a gate shows: its steps' outputs as the gate opened, and the tail of each log,
//! read as the person (the gate's grant lets its approvers read exactly those logs while it waits;
//! anyone else gets the API server's refusal, in its words). The whole log is streamed, never
//! loaded into this server.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{AsyncBufReadExt, AsyncReadExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use kube::{Api, Client, ResourceExt};

use super::html::esc;
use hitl_api::Approval;
use hitl_api::approval::EvidencePod;

/// Lines of each log the gate page shows unless asked for more, and the most it shows.
pub const TAIL_LINES: i64 = 200;
pub const MAX_TAIL_LINES: i64 = 20_000;
/// The most of one log the page loads, whatever the line count.
const TAIL_BYTES: usize = 1024 * 1024;

/// One evidence step (or item) as the page shows it.
pub struct Shown {
    pub entry: EvidencePod,
    /// The log as read: its last lines and its whole size, or the API server's refusal; None
    /// where no log is shown.
    pub log: Option<Result<Tail, String>>,
}

/// The end of a log, and how long the whole log was when it was read.
#[derive(Debug, Default, PartialEq)]
pub struct Tail {
    pub text: String,
    pub lines: u64,
    pub bytes: u64,
}

/// Reads every log the gate shows, as the person, all at once: each streamed to its end, keeping
/// only its last `lines` lines (at most 1 MiB), so the page knows the whole log's size too.
pub async fn read(client: &Client, a: &Approval, lines: i64) -> Vec<Shown> {
    let ns = a.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let keep = usize::try_from(lines).unwrap_or(0);
    let reads = a.spec.evidence_pods.iter().map(|e| {
        let api = api.clone();
        async move {
            let log = match &e.pod {
                Some(pod) => Some(tail(&api, pod, keep).await),
                None => None,
            };
            Shown { entry: e.clone(), log }
        }
    });
    futures::future::join_all(reads).await
}

async fn tail(api: &Api<Pod>, pod: &str, keep: usize) -> Result<Tail, String> {
    let mut stream = api.log_stream(pod, &LogParams::default()).await.map_err(|e| super::said(&e).1)?;
    let mut last: std::collections::VecDeque<Vec<u8>> = std::collections::VecDeque::new();
    let (mut kept_bytes, mut seen) = (0usize, Tail::default());
    loop {
        let mut line = Vec::new();
        let n = stream.read_until(b'\n', &mut line).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        seen.bytes += n as u64;
        seen.lines += 1;
        kept_bytes += n;
        last.push_back(line);
        while last.len() > keep || (kept_bytes > TAIL_BYTES && last.len() > 1) {
            kept_bytes -= last.pop_front().map_or(0, |l| l.len());
        }
    }
    seen.text = String::from_utf8_lossy(&last.into_iter().flatten().collect::<Vec<u8>>()).into_owned();
    Ok(seen)
}

/// What the page showed of the logs, recorded with the decision (`spec.evidenceSeen`):
/// `tf-plan-1-abc: 302 lines, 20412 bytes`.
pub fn seen(shown: &[Shown]) -> Option<String> {
    let parts: Vec<String> = shown
        .iter()
        .filter_map(|s| match (&s.log, &s.entry.pod) {
            (Some(Ok(t)), Some(pod)) => Some(format!("{pod}: {} lines, {} bytes", t.lines, t.bytes)),
            (Some(Err(_)), Some(pod)) => Some(format!("{pod}: not readable")),
            _ => None,
        })
        .collect();
    let text = parts.join("; ");
    (!text.is_empty()).then(|| text.chars().take(2048).collect())
}

/// The Evidence section of a gate page.
pub fn section(shown: &[Shown], gate_href: &str, digest: Option<&str>, lines: i64) -> String {
    if shown.is_empty() {
        return String::new();
    }
    let items: String = shown.iter().map(|s| item(s, gate_href)).collect();
    let more = if shown.iter().any(|s| s.log.as_ref().is_some_and(|l| l.is_ok())) && lines < MAX_TAIL_LINES {
        format!(
            " · <a href=\"{gate_href}?lines={}\" id=\"more-lines\">show more lines</a>",
            (lines * 5).min(MAX_TAIL_LINES)
        )
    } else {
        String::new()
    };
    format!(
        "<section id=\"evidence\" aria-labelledby=\"evidence-title\"><h2 id=\"evidence-title\">Evidence</h2>\
         <p class=\"meta\">As the gate opened ({digest}); the last {lines} lines of each log{more}.</p>{items}</section>",
        digest = esc(digest.unwrap_or("")),
    )
}

fn item(s: &Shown, gate_href: &str) -> String {
    let e = &s.entry;
    let title = match e.item {
        Some(i) => format!("{} · item {i}", esc(&e.step)),
        None => esc(&e.step),
    };
    let outputs = match &e.outputs {
        Some(o) => format!("<pre class=\"outputs\">{}</pre>", esc(o)),
        None => "<p class=\"meta\">No outputs.</p>".into(),
    };
    let log = match (&s.log, &e.pod) {
        (Some(Ok(tail)), Some(pod)) => format!(
            "<pre class=\"log\" tabindex=\"0\">{}</pre><p class=\"meta\">{} lines, {} bytes in all · \
             <a href=\"{gate_href}/evidence/{pod}\">the whole log</a></p>",
            esc(&tail.text),
            tail.lines,
            tail.bytes,
            pod = esc(pod),
        ),
        (Some(Err(refusal)), _) => {
            format!("<p class=\"alert\" role=\"status\"><strong>The log cannot be shown:</strong> {}</p>", esc(refusal))
        }
        _ => String::new(),
    };
    format!("<article class=\"evidence\"><h3>{title}</h3>{outputs}{log}</article>")
}

/// The whole log of one evidence Pod of the gate, streamed as plain text as the person: only a
/// Pod the gate shows (this server is no general log reader), only what RBAC lets them read.
pub async fn stream(client: &Client, a: &Approval, pod: &str) -> Response {
    if !a.spec.evidence_pods.iter().any(|e| e.pod.as_deref() == Some(pod)) {
        let text = format!("gate {} shows no log of Pod {pod}", a.name_any());
        return (StatusCode::NOT_FOUND, text).into_response();
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), &a.namespace().unwrap_or_default());
    let reader = match api.log_stream(pod, &LogParams::default()).await {
        Ok(r) => r,
        Err(e) => {
            let (code, said) = super::said(&e);
            return (code, said).into_response();
        }
    };
    let chunks = futures::stream::unfold(Box::pin(reader), |mut r| async move {
        let mut buf = vec![0u8; 64 * 1024];
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), r))
            }
            Err(e) => Some((Err(e), r)),
        }
    });
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], Body::from_stream(chunks)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_is_text_never_markup_and_a_refusal_is_said() {
        let entry = EvidencePod { step: "plan".into(), pod: Some("p-1".into()), ..Default::default() };
        let shown = [
            Shown {
                entry: entry.clone(),
                log: Some(Ok(Tail { text: "<script>alert(1)</script>\n+ aws_iam_role".into(), lines: 2, bytes: 40 })),
            },
            Shown { entry, log: Some(Err("pods \"p-1\" is forbidden: User \"bob\" cannot get resource".into())) },
        ];
        let html = section(&shown, "/gates/ns/g", Some("sha256:ab"), TAIL_LINES);
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("<a href=\"/gates/ns/g/evidence/p-1\">the whole log</a>"), "{html}");
        assert!(html.contains("The log cannot be shown:</strong> pods &quot;p-1&quot; is forbidden"), "{html}");
        assert!(html.contains("?lines=1000"), "{html}");
        assert!(html.contains("2 lines, 40 bytes in all"), "{html}");
        assert_eq!(seen(&shown).as_deref(), Some("p-1: 2 lines, 40 bytes; p-1: not readable"));
    }
}
