//! `logs`: the evidence a gate shows, read as the person (the gate's grant lets its approvers read
//! exactly those Pods' logs while it waits). Streamed, never loaded whole.

use anyhow::bail;
use futures::{AsyncBufReadExt, AsyncReadExt, TryStreamExt};
use hitl_api::Approval;
use hitl_api::approval::EvidencePod;
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use kube::{Api, Client, ResourceExt};
use tokio::io::AsyncWriteExt;

/// What to print.
pub struct Wanted<'a> {
    pub step: Option<&'a str>,
    pub follow: bool,
    pub tail: Option<i64>,
}

/// The evidence Pods of `a` whose logs it shows, of `step` if given.
pub fn pods<'a>(a: &'a Approval, step: Option<&str>) -> anyhow::Result<Vec<&'a EvidencePod>> {
    let shown: Vec<&EvidencePod> = a.spec.evidence_pods.iter().filter(|e| e.pod.is_some()).collect();
    if shown.is_empty() {
        bail!("gate {} shows no logs: its step names no evidence with logs: true", a.name_any());
    }
    let chosen: Vec<&EvidencePod> = shown.iter().copied().filter(|e| step.is_none_or(|s| e.step == s)).collect();
    if chosen.is_empty() {
        let steps: Vec<&str> = shown.iter().map(|e| e.step.as_str()).collect();
        bail!("gate {} shows no log of step {:?}; it shows: {}", a.name_any(), step.unwrap_or(""), steps.join(", "));
    }
    Ok(chosen)
}

/// `step plan` or `step scan, item 3`.
pub fn label(e: &EvidencePod) -> String {
    match e.item {
        Some(i) => format!("step {}, item {i}", e.step),
        None => format!("step {}", e.step),
    }
}

/// Prints each Pod's log: one as it is, several each under a header (or, followed, every line
/// prefixed with its step, as they come).
pub async fn print(client: &Client, ns: &str, a: &Approval, wanted: Wanted<'_>) -> anyhow::Result<()> {
    let chosen = pods(a, wanted.step)?;
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let params = LogParams { follow: wanted.follow, tail_lines: wanted.tail, ..Default::default() };
    let mut out = tokio::io::stdout();
    if chosen.len() == 1 || !wanted.follow {
        for e in &chosen {
            if chosen.len() > 1 {
                out.write_all(format!("==> {} ({}) <==\n", label(e), e.pod.as_deref().unwrap_or("")).as_bytes())
                    .await?;
            }
            let mut stream = api.log_stream(e.pod.as_deref().unwrap_or(""), &params).await?;
            copy(&mut stream, &mut out).await?;
        }
        return Ok(());
    }
    let streams = chosen.iter().map(|e| {
        let (api, params) = (api.clone(), params.clone());
        async move {
            let lines = api.log_stream(e.pod.as_deref().unwrap_or(""), &params).await?.lines();
            Ok::<_, anyhow::Error>(lines.map_ok(move |l| format!("[{}] {l}\n", label(e))))
        }
    });
    let mut merged = futures::stream::select_all(futures::future::try_join_all(streams).await?);
    while let Some(line) = merged.try_next().await? {
        out.write_all(line.as_bytes()).await?;
    }
    Ok(())
}

/// Copies a log to stdout in chunks as it arrives.
async fn copy(stream: &mut (impl futures::AsyncBufRead + Unpin), out: &mut tokio::io::Stdout) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            out.flush().await?;
            return Ok(());
        }
        out.write_all(&buf[..n]).await?;
    }
}
