//! The decision burst: `count` one-gate Workflows wait at once, then a person's approvals of all
//! of them arrive in one burst (as many in flight as the bench creates with). Per gate: the
//! approving patch returned -> the next step's Pod seen `ADDED` in the bench's own Pod watch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use serde_json::json;

use super::{Cluster, Operator, Phase, approval_api, create_all, per_item, watch_until, workflow_api};

pub async fn phase(c: &Cluster, op: &Operator, ns: &str, count: usize) -> anyhow::Result<Phase> {
    eprintln!("decision burst: {count} gates ...");
    let prefix = "burst";
    let spec =
        json!({"steps": [{"name": "gate", "suspend": {}}, {"name": "after", "container": {"image": "busybox:1.36"}}]});
    let workflows = workflow_api(&c.client, ns);
    let approvals = approval_api(&c.client, ns);
    let pending = tokio::spawn(watch_until(approvals.clone(), count, |a: &DynamicObject| {
        Some(a.name_any().starts_with("burst-") && a.data["status"]["phase"] == "Pending")
    }));
    create_all(count, |i| {
        let api = workflows.clone();
        let spec = spec.clone();
        async move {
            let gvk = GroupVersionKind::gvk("hitl.dev", "v1alpha1", "Workflow");
            let mut wf = DynamicObject::new(&format!("{prefix}-{i}"), &ApiResource::from_gvk(&gvk));
            wf.data = json!({"spec": spec});
            api.create(&PostParams::default(), &wf).await?;
            Ok(())
        }
    })
    .await?;
    pending.await??;

    let pods = tokio::spawn(next_pods(Api::namespaced(c.client.clone(), ns), count));
    let before = c.requests()?;
    let (cpu_before, _, _) = op.usage();
    let approved: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let started = Instant::now();
    create_all(count, |i| {
        let (api, approved) = (approvals.clone(), approved.clone());
        async move {
            let patch = json!({"spec": {"decision": "Approve"}});
            api.patch(&format!("{prefix}-{i}.gate"), &PatchParams::default(), &Patch::Merge(&patch)).await?;
            approved.lock().unwrap().insert(format!("{prefix}-{i}"), Instant::now());
            Ok(())
        }
    })
    .await?;
    let added = tokio::time::timeout(super::PHASE_TIMEOUT, pods)
        .await
        .map_err(|_| anyhow::anyhow!("decision burst: not every next Pod was seen"))??;
    let seconds = started.elapsed().as_secs_f64();
    // The runs finish before the phase ends: the next phases and the restart count them as kept,
    // and a run still going when the operator stops would hold its Pod's finalizer.
    watch_until(workflows, count, |w: &DynamicObject| {
        Some(w.name_any().starts_with("burst-") && w.data["status"]["phase"] == "Succeeded")
    })
    .await?;
    let approved = approved.lock().unwrap().clone();
    let decisions_ms = approved
        .iter()
        .filter_map(|(wf, at)| Some(added.get(wf)?.saturating_duration_since(*at).as_secs_f64() * 1000.0));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await; // trailing writes
    let (requests, throttled) = per_item(&before, &c.requests()?, count);
    let (cpu, peak, _) = op.usage();
    Ok(Phase {
        name: format!("decision burst: {count} waiting gates approved at once"),
        count,
        seconds,
        per_minute: count as f64 * 60.0 / seconds,
        decisions_ms: decisions_ms.collect(),
        requests,
        throttled,
        cpu_seconds: cpu - cpu_before,
        peak_rss_mib: peak,
        ..Default::default()
    })
}

/// When each of `count` `burst-*` runs' second step's Pod is first seen.
async fn next_pods(pods: Api<Pod>, count: usize) -> HashMap<String, Instant> {
    let mut added = HashMap::new();
    let mut stream = watcher::watcher(pods, watcher::Config::default().labels("hitl.dev/workflow")).boxed();
    while added.len() < count {
        let Some(event) = stream.next().await else { break };
        let Ok(Event::Apply(pod) | Event::InitApply(pod)) = event else { continue };
        let labels = pod.labels();
        let (Some(wf), Some(step)) = (labels.get("hitl.dev/workflow"), labels.get("hitl.dev/step")) else { continue };
        if wf.starts_with("burst-") && step == "after" {
            added.entry(wf.clone()).or_insert_with(Instant::now);
        }
    }
    added
}
