//! The operator's resident memory follows what its caches hold, not the peak it once had.
//!
//! glibc's allocator gives each thread that contends for it an arena of its own (up to eight per
//! core) and keeps memory freed in them for reuse. After a burst (a list of every Workflow at
//! start, a thousand decisions at once) the operator's resident set stayed near its peak while
//! the caches held far less (`make bench-scale`, 5,000 Workflows kept: 104 MiB steady against 79
//! MiB after a restart with the same caches; 97 and 68 MiB with this module). So: two arenas,
//! and what is free is handed back to the kernel every ten seconds. Other allocators: nothing to
//! do.

use std::time::Duration;

/// How often freed memory goes back to the kernel. A trim walks the free lists; every ten seconds
/// cost no CPU that `make bench-scale` could tell apart (22.3 CPU s with it, 23.3 without, for
/// 5,000 one-Pod Workflows).
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// At most two arenas. Call before any thread is started.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands freed memory back to the kernel now.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Trims every ten seconds, for as long as the runtime runs.
pub async fn trim_periodically() {
    let mut every = tokio::time::interval(TRIM_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        tokio::task::spawn_blocking(|| {
            let started = std::time::Instant::now();
            trim();
            tracing::debug!(took_us = started.elapsed().as_micros() as u64, "freed memory handed back");
        });
    }
}
