//! CEL evaluation in child processes (issue 26, items 9 and 10). cel 0.15 has no cost limit, no
//! memory limit and no way to cancel an evaluation, and a thread cannot be stopped from outside:
//! a `when` that builds a 500 MiB string took the operator past its memory limit (killed, and
//! killed again on every restart), and `when`s past the time limit kept burning CPU on abandoned
//! threads. A process can be limited and killed. So the operator evaluates in a few long-lived
//! `hitl-operator cel-worker` processes (`worker`), each with a limit on its writable memory:
//!
//! - past the time limit, the worker is killed: the evaluation stops, its CPU is free again;
//! - past the memory limit, its allocation fails and the worker dies, not the operator;
//! - either way the step fails (`ExpressionError`, saying which limit), and that is written to the
//!   Workflow's status like any failure, so no later pass, and no restart, evaluates it again;
//! - turns at the workers go to namespaces in rotation (`fair_queue`): a tenant with many slow
//!   expressions waits behind itself, not in front of everyone else.
//!
//! Worst case memory: `workers` x (memory limit + `worker::STACK_MIB` + `worker::BASELINE_MIB`),
//! besides the operator's own; the chart's limit allows for it (README, "Expressions").

mod fair_queue;
mod process;
pub mod worker;

use std::path::PathBuf;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::engine::cel_runner::{Evaluated, Ran, Runner};
use crate::engine::cel_task::Request;
use fair_queue::FairQueue;
use process::{Outcome, Worker};

/// Default memory an evaluation may use, in MiB: a 4 KiB parameter repeated 4096 times (16 MiB)
/// fits with room; the reported 540 MiB does not.
pub const MEMORY_LIMIT_MIB: u64 = 64;
/// Default number of worker processes, so of evaluations at once.
pub const WORKERS: usize = 2;
/// A worker is replaced after this many answers, so whatever its heap keeps between evaluations
/// never eats into the next one's limit.
const ANSWERS_PER_WORKER: usize = 1000;

/// Why an evaluation was stopped: `time` or `memory`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoppedLabel {
    pub limit: &'static str,
}

/// Evaluations stopped at a limit, by limit (`hitl_expression_evaluations_stopped_total`).
pub static STOPPED: LazyLock<Family<StoppedLabel, Counter>> = LazyLock::new(|| {
    let family = Family::default();
    for limit in ["time", "memory"] {
        drop(family.get_or_create(&StoppedLabel { limit }));
    }
    family
});

pub struct Sandbox {
    exe: PathBuf,
    memory_mib: u64,
    queue: FairQueue,
    idle: Mutex<Vec<Worker>>,
}

impl Sandbox {
    /// Evaluates in up to `workers` processes of `exe` (this program), each limited to
    /// `memory_mib` MiB for an evaluation.
    pub fn new(exe: PathBuf, workers: usize, memory_mib: u64) -> Self {
        Self { exe, memory_mib, queue: FairQueue::new(workers), idle: Mutex::new(Vec::new()) }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Worker>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Runner for Sandbox {
    fn run(&self, namespace: &str, request: Request, limit: Duration) -> Evaluated {
        let _turn = self.queue.wait_turn(namespace);
        let mut running = (0, String::new());
        // An idle worker found dead (its request never reached it) is no verdict on the
        // expression: the evaluation goes to a fresh worker instead.
        let idle = self.idle().pop();
        let mut attempt = self.evaluate_in(idle, &request, limit, &mut running);
        if let Ok((_, Outcome::Gone(why))) = &attempt {
            tracing::warn!(%why, "an idle evaluator process had died; evaluating in a new one");
            attempt = self.evaluate_in(None, &request, limit, &mut running);
        }
        let (worker, outcome) = match attempt {
            Ok(pair) => pair,
            Err(why) => return Evaluated { ran: Ran::Busy(why), running },
        };
        let ran = match outcome {
            Outcome::Answered(answered) => {
                if worker.answered < ANSWERS_PER_WORKER {
                    self.idle().push(worker);
                }
                Ran::Done(answered)
            }
            Outcome::TimedOut => {
                STOPPED.get_or_create(&StoppedLabel { limit: "time" }).inc();
                Ran::TimedOut { stopped: true }
            }
            Outcome::OutOfMemory => {
                STOPPED.get_or_create(&StoppedLabel { limit: "memory" }).inc();
                Ran::OutOfMemory { limit_mib: self.memory_mib }
            }
            Outcome::Died(why) | Outcome::Gone(why) => Ran::Crashed(format!("the evaluator process died: {why}")),
        };
        Evaluated { ran, running }
    }
}

impl Sandbox {
    /// Evaluates in `found`, or in a new worker; Err when no worker can be started.
    fn evaluate_in(
        &self,
        found: Option<Worker>,
        request: &Request,
        limit: Duration,
        running: &mut (usize, String),
    ) -> Result<(Worker, Outcome), String> {
        let mut worker = match found.map_or_else(|| Worker::start(&self.exe, self.memory_mib), Ok) {
            Ok(w) => w,
            Err(e) => {
                let why = format!("could not start an evaluator process: {e}; evaluating later");
                tracing::error!(%why);
                return Err(why);
            }
        };
        let outcome = worker.evaluate(request, limit, running);
        Ok((worker, outcome))
    }
}
