//! Where evaluations run. The engine asks `runner()`; a process installs its own once at start
//! (the operator: child processes that can be stopped and whose memory is limited, see
//! `hitl_operator::sandbox`). Without one, evaluations run on threads of this process
//! (`bounded`): fine for checks at admission time and for tests, but a runaway there is
//! abandoned, not stopped, and its memory is the process's.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use super::bounded::{LIMITER, Limited};
use super::cel_task::{Answered, Request, answer};

/// How an evaluation ended, short of an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Ran {
    Done(Answered),
    /// Still running at the time limit: stopped (its process killed) or abandoned (its thread
    /// runs on until the expression ends).
    TimedOut {
        stopped: bool,
    },
    /// It needed more memory than an evaluation may have, and was stopped.
    OutOfMemory {
        limit_mib: u64,
    },
    /// It ended without an answer (a panic, a crash of its process).
    Crashed(String),
    /// Nothing could evaluate it now: try again later.
    Busy(String),
}

/// An outcome, with the expression that was running last: (index of its template, text).
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    pub ran: Ran,
    pub running: (usize, String),
}

/// Runs evaluations. `namespace` is the Workflow's: a runner shares its capacity out between
/// namespaces, so one tenant's expressions cannot starve another's.
pub trait Runner: Send + Sync {
    fn run(&self, namespace: &str, request: Request, limit: Duration) -> Evaluated;
}

static RUNNER: OnceLock<Arc<dyn Runner>> = OnceLock::new();

/// Makes `runner` the process's, once, before the first evaluation. False if one was already
/// installed (or used).
pub fn install(runner: Arc<dyn Runner>) -> bool {
    RUNNER.set(runner).is_ok()
}

/// The process's runner: the installed one, else threads of this process.
pub fn runner() -> &'static dyn Runner {
    RUNNER.get_or_init(|| Arc::new(OnThreads)).as_ref()
}

/// Evaluates on a large-stack thread of this process, within the time limit (`bounded`).
pub struct OnThreads;

impl Runner for OnThreads {
    fn run(&self, _namespace: &str, request: Request, limit: Duration) -> Evaluated {
        let running = Arc::new(Mutex::new((0, String::new())));
        let theirs = running.clone();
        let outcome = LIMITER.run(limit, move || {
            answer(&request, &mut |i, e| *theirs.lock().unwrap_or_else(PoisonError::into_inner) = (i, e.to_string()))
        });
        let ran = match outcome {
            Limited::Done(r) => Ran::Done(r),
            Limited::TimedOut => Ran::TimedOut { stopped: false },
            Limited::Panicked(p) => Ran::Crashed(format!("panicked: {p}")),
            Limited::Busy => Ran::Busy(format!(
                "{} evaluations that ran past the time limit are still running; evaluating later",
                LIMITER.runaway()
            )),
        };
        let running = running.lock().unwrap_or_else(PoisonError::into_inner).clone();
        Evaluated { ran, running }
    }
}
