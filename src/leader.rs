//! Leader election on a `coordination.k8s.io` Lease (the kube-lease-manager crate), so that of
//! several replicas exactly one reconciles and the others stand by, serving their probes.
//!
//! The holder renews the Lease `renew_grace` seconds before it would expire; that margin is also
//! the clock skew between nodes it tolerates. A standby watches the Lease: it takes over once the
//! Lease has expired (a holder killed outright), or at once when the holder releases it (SIGTERM).
//! Two holders for a moment (a partitioned one that has not yet noticed) cannot duplicate work:
//! every child has a deterministic name and every status write carries the resourceVersion it was
//! computed from.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where the Lease lives and how it is held.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// Unique per process (the Pod's name and the process id).
    pub identity: String,
    /// Seconds a Lease stays valid after its last renewal.
    pub duration: u64,
    /// Seconds before expiry at which the holder renews.
    pub renew_grace: u64,
}

/// This process holds the Lease; a task keeps renewing it.
pub struct Leader {
    manager: Arc<LeaseManager>,
    held: watch::Receiver<bool>,
    renewing: JoinHandle<()>,
}

async fn manager(client: &Client, config: &LeaseConfig) -> anyhow::Result<LeaseManager> {
    Ok(LeaseManagerBuilder::new(client.clone(), &config.name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(config.duration)
        .with_grace(config.renew_grace)
        .with_field_manager("hitl-operator")
        .build()
        .await?)
}

/// Waits until this process holds the Lease.
pub async fn acquire(client: Client, config: &LeaseConfig) -> anyhow::Result<Leader> {
    let mut candidate = manager(&client, config).await?;
    tracing::info!(lease = %config.name, namespace = %config.namespace, identity = %config.identity,
        "standing by until this replica holds the lease");
    // A manager trusts what it last read until the Lease would expire; when the Lease is released
    // (its holder stopped on SIGTERM) a fresh manager reads it and takes it at once.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let selector = watcher::Config::default().fields(&format!("metadata.name={}", config.name));
    let mut lease_changes = watcher(leases, selector).default_backoff().applied_objects().boxed();
    loop {
        let released = tokio::select! {
            held = candidate.changed() => match held {
                Ok(true) => break,
                Ok(false) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take part in leader election yet");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    false
                }
            },
            change = lease_changes.next() => match change {
                Some(Ok(lease)) => lease.spec.and_then(|s| s.holder_identity).is_none_or(|h| h.is_empty()),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watching the lease failed");
                    false
                }
                None => false,
            },
        };
        if released {
            candidate = manager(&client, config).await?;
        }
    }
    tracing::info!(lease = %config.name, identity = %config.identity, "holding the lease: reconciling");
    let manager = Arc::new(candidate);
    let (tx, held) = watch::channel(true);
    let renewing = tokio::spawn(renew(manager.clone(), tx));
    Ok(Leader { manager, held, renewing })
}

/// Keeps the Lease renewed; tells when it is lost.
async fn renew(manager: Arc<LeaseManager>, held: watch::Sender<bool>) {
    loop {
        match manager.changed().await {
            Ok(true) => {}
            Ok(false) => {
                let _ = held.send(false);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing the lease failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

impl Leader {
    /// Resolves when the Lease is lost (another replica holds it now).
    pub async fn lost(&mut self) {
        while *self.held.borrow_and_update() {
            if self.held.changed().await.is_err() {
                return;
            }
        }
    }

    /// Gives the Lease up so a standby takes over at once instead of after it expires.
    pub async fn release(self) {
        self.renewing.abort();
        match tokio::time::timeout(Duration::from_secs(5), self.manager.release()).await {
            Ok(Ok(())) => tracing::info!("released the lease"),
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing the lease failed; it expires on its own"),
            Err(_) => tracing::warn!("releasing the lease took longer than 5s; it expires on its own"),
        }
    }
}
