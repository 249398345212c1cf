//! hitl-operator: Workflows whose steps run as Pods, with Approvals where a person must decide.
// kube-derive repeats `type_` once per printcolumn, which this lint misreads as a mistake.
#![allow(clippy::duplicated_attributes)]
pub mod api;
pub mod controller;
pub mod engine;
pub mod error_category;
pub mod inbox_reader;
pub mod leader;
pub mod metrics;
pub mod ui;
