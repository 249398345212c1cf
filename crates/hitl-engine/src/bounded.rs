//! Running CEL where it cannot take the operator down: on a thread of its own with a large stack
//! (the parser and the interpreter recurse once per level of the expression), and, when
//! evaluating, with a time limit.
//!
//! cel 0.15 has no cost limit and no way to cancel an evaluation. An evaluation that runs past its
//! time limit is abandoned, not stopped: its thread runs on until the expression finishes. The
//! static bounds in `expr` keep most such runs to seconds (two nested comprehensions over the
//! 4096 letters of a parameter: ~6 s on a release build, ~30 s on a debug one), but not all: an
//! expression can first build a long list from its inputs. So while `MAX_RUNAWAY` abandoned
//! threads are still running, new evaluations are refused (`Limited::Busy`) rather than piling up.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::Builder;
use std::time::Duration;

/// Stack of a CEL thread. Virtual: only the pages an expression touches are used. Measured on a
/// debug build: parsing takes ~150 KiB per bracket level, evaluating ~20-40 KiB per level of the
/// expression tree, so the static bounds need at most ~6 MiB.
pub const STACK_SIZE: usize = 64 << 20;

/// Abandoned evaluations that may still be running before new ones are refused.
pub const MAX_RUNAWAY: usize = 4;

/// The process's evaluations: counts the abandoned ones still running.
pub static LIMITER: Limiter = Limiter::new(MAX_RUNAWAY);

/// Runs `f` on a fresh thread with a large stack and waits for it: for work bounded by the size
/// of its input (parsing a length-checked expression). A panic comes back as its message.
pub fn on_big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, String> {
    std::thread::scope(|s| {
        let thread = Builder::new().name("cel".into()).stack_size(STACK_SIZE).spawn_scoped(s, f);
        let thread = thread.map_err(|e| format!("cannot start a thread for CEL: {e}"))?;
        thread.join().map_err(|p| format!("panicked: {}", panic_text(p.as_ref())))
    })
}

/// How a limited run ended.
#[derive(Debug, PartialEq)]
pub enum Limited<T> {
    Done(T),
    /// Still running at the time limit; its thread is abandoned and counted until it ends.
    TimedOut,
    /// Too many abandoned runs are still going (or no thread could be started): try later.
    Busy,
    Panicked(String),
}

/// Counts abandoned runs, and refuses new ones while `max` of them are still going.
pub struct Limiter {
    runaway: AtomicUsize,
    max: usize,
}

/// What a run's thread hands back, and whether anyone still waits for it.
struct Slot<T> {
    result: Option<std::thread::Result<T>>,
    abandoned: bool,
}

impl Limiter {
    pub const fn new(max: usize) -> Self {
        Self { runaway: AtomicUsize::new(0), max }
    }

    /// Abandoned runs still going.
    pub fn runaway(&self) -> usize {
        self.runaway.load(Ordering::SeqCst)
    }

    /// Runs `f` on a fresh large-stack thread and waits at most `limit` for it. Blocks the
    /// calling thread for that long, so call it off the async runtime.
    pub fn run<T: Send + 'static>(
        &'static self,
        limit: Duration,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Limited<T> {
        if self.runaway() >= self.max {
            return Limited::Busy;
        }
        let slot = Arc::new((Mutex::new(Slot { result: None, abandoned: false }), Condvar::new()));
        let theirs = slot.clone();
        let spawned = Builder::new().name("cel-eval".into()).stack_size(STACK_SIZE).spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(f));
            let (lock, done) = &*theirs;
            let mut slot = lock.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.abandoned {
                self.runaway.fetch_sub(1, Ordering::SeqCst);
            } else {
                slot.result = Some(result);
                done.notify_one();
            }
        });
        if spawned.is_err() {
            return Limited::Busy;
        }
        let (lock, done) = &*slot;
        let slot = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut slot, _) =
            done.wait_timeout_while(slot, limit, |s| s.result.is_none()).unwrap_or_else(PoisonError::into_inner);
        match slot.result.take() {
            Some(Ok(v)) => Limited::Done(v),
            Some(Err(p)) => Limited::Panicked(panic_text(p.as_ref())),
            None => {
                // Under the lock, so the thread sees `abandoned` only after it was counted.
                slot.abandoned = true;
                self.runaway.fetch_add(1, Ordering::SeqCst);
                Limited::TimedOut
            }
        }
    }
}

/// A panic's message (`panic!` with a literal or a formatted string), else a placeholder.
pub fn panic_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_deep_recursion_runs_on_the_big_stack() {
        fn depth(n: usize) -> usize {
            let pad = std::hint::black_box([0u8; 1024]);
            if n == 0 { pad[0] as usize } else { 1 + depth(n - 1) }
        }
        // ~10 MiB of frames: more than a default 2 MiB thread has.
        assert_eq!(on_big_stack(|| depth(10_000)), Ok(10_000));
        assert_eq!(on_big_stack(|| -> () { panic!("boom") }), Err("panicked: boom".into()));
    }

    #[test]
    fn results_panics_and_timeouts() {
        static L: Limiter = Limiter::new(4);
        assert_eq!(L.run(Duration::from_secs(5), || 7), Limited::Done(7));
        assert_eq!(L.run(Duration::from_secs(5), || -> () { panic!("at {}", 3) }), Limited::Panicked("at 3".into()));
        let release = Arc::new(AtomicUsize::new(0));
        let r = release.clone();
        let slow = move || {
            while r.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        assert_eq!(L.run(Duration::from_millis(50), slow), Limited::TimedOut);
        assert_eq!(L.runaway(), 1, "the abandoned thread is counted while it runs");
        release.store(1, Ordering::SeqCst);
        wait_until("the abandoned thread to end", || L.runaway() == 0);
    }

    #[test]
    fn refuses_new_runs_while_too_many_are_abandoned() {
        static L: Limiter = Limiter::new(2);
        let release = Arc::new(AtomicUsize::new(0));
        let slow = || {
            let r = release.clone();
            move || {
                while r.load(Ordering::SeqCst) == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        };
        assert_eq!(L.run(Duration::from_millis(20), slow()), Limited::TimedOut);
        assert_eq!(L.run(Duration::from_millis(20), slow()), Limited::TimedOut);
        assert_eq!(L.run(Duration::from_secs(5), || 1), Limited::Busy);
        release.store(1, Ordering::SeqCst);
        wait_until("the abandoned threads to end", || L.runaway() == 0);
        assert_eq!(L.run(Duration::from_secs(5), || 1), Limited::Done(1));
    }
}
