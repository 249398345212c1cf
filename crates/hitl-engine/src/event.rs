//! The Events the engine asks the controller to record.

/// A Kubernetes Event to record on the Workflow. Reasons are static so they can be metric labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}
