//! Pure decisions: no I/O and no clock reads. The controller gathers objects, asks `plan`, and
//! carries the plan out. One exception, for safety: CEL is evaluated where a runner puts it
//! (`cel_runner`): on threads of its own with a large stack and a time limit (`bounded`), or, in
//! the operator, in child processes that it can stop (`hitl_operator::sandbox`).
//!
//! A crate of its own (hitl-engine) so that this stays true: of this workspace it depends on the API types alone
//! (hitl-api), has no Kubernetes client, no async runtime and no network, and cannot name the
//! controller.
pub mod approval_request;
pub mod archive;
pub mod authors;
pub mod bounded;
pub mod cel_runner;
pub mod cel_task;
pub mod conditions;
pub mod cron;
pub mod duration;
pub mod event;
pub mod evidence;
pub mod expr;
pub mod foreach;
pub mod gate;
pub mod graph;
pub mod inbox_contents;
pub mod inputs;
pub mod names;
pub mod notify;
pub mod notify_target;
pub mod outputs;
pub mod plan;
#[cfg(test)]
mod plan_tests;
pub mod quorum;
pub mod template;
