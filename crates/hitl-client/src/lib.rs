//! What people use to decide: the approval pages (`ui`, served by `kubectl hitl ui` and by the
//! operator image's `hitl-operator ui`), the inbox reader (`kubectl hitl pending`), and the kubectl
//! plugin `kubectl-hitl` (src/bin). It reads and patches API objects with the person's own
//! credentials; it depends on the API types and the engine's pure functions, never on the operator.
pub mod archive_reader;
pub mod inbox_reader;
pub mod ui;
