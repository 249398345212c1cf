//! hitl-operator: Workflows whose steps run as Pods, with Approvals where a person must decide.
//!
//! This crate is the operator: the controller, its metrics, leader election and the CEL sandbox.
//! The layers below it are crates of their own, re-exported here under their old names so that
//! `hitl_operator::api::Workflow` still reads as before: `api` (hitl-api, the CRD types), `engine`
//! (hitl-engine, pure decisions), `ui` and `inbox_reader` (hitl-client, the pages and the plugin's
//! library). None of them can name this crate.
pub use hitl_api as api;
pub use hitl_client::{inbox_reader, ui};
pub use hitl_engine as engine;

pub mod archive;
pub mod controller;
pub mod error_category;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod sandbox;
