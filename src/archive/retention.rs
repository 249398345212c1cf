//! Retention: records older than the configured age leave the archive, each namespace's removal
//! with the checkpoint that keeps its chain verifiable (see `store::forget_before`).

use std::time::Duration;

use tracing::{info, warn};

use super::store::Archive;

/// How often retention runs; records live at most this much longer than the retention.
const EVERY: Duration = Duration::from_secs(3600);

/// Runs retention now and then every hour, for as long as the operator leads.
pub async fn run(archive: Archive, keep: Duration) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        let Ok(keep) = jiff::SignedDuration::try_from(keep) else { return };
        let before = jiff::Timestamp::now().checked_sub(keep).unwrap_or(jiff::Timestamp::MIN);
        match archive.forget_before(before).await {
            Ok(0) => {}
            Ok(removed) => info!(removed, %before, "archive retention removed old records"),
            Err(e) => warn!(error = %e, "archive retention failed; trying again in an hour"),
        }
    }
}
