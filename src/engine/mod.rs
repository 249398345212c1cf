//! Pure decisions: no I/O and no clock reads. The controller gathers objects, asks `plan`, and
//! carries the plan out. One exception, for safety: `bounded` runs CEL on threads of its own, with
//! a large stack and a time limit.
pub mod approval_request;
pub mod bounded;
pub mod conditions;
pub mod cron;
pub mod duration;
pub mod event;
pub mod expr;
pub mod foreach;
pub mod gate;
pub mod graph;
pub mod inbox_contents;
pub mod inputs;
pub mod names;
pub mod notify;
pub mod outputs;
pub mod plan;
#[cfg(test)]
mod plan_tests;
pub mod pod_changes;
pub mod quorum;
pub mod template;
