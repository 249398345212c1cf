//! The decision archive: every decided gate and finished run, stored in PostgreSQL in a hash
//! chain per namespace (`store`), written by a controller that holds each Workflow back from
//! deletion until its records are stored (`writer`), and read by people through the API server, as
//! themselves (`server`, an aggregated API). Off unless `--archive-database-url` is given.
pub mod condition;
pub mod retention;
pub mod server;
pub mod store;
pub mod writer;
