//! sentry supervises a command, notices when it has become a runaway (burning CPU, memory or
//! output without making progress), intervenes safely and records why.
//!
//! The library is laid out by stage of the data flow: `capture` observes the child, `detect`
//! turns observations into findings, `decide` turns findings into decisions, `act` carries them out on the tree, `supervise` runs
//! the whole loop for `sentry run`, and `report` writes what happened. Stages talk through the
//! plain types in [`model`]. This crate is not the eBPF program (that is `sentry-ebpf`) and not
//! the build tooling (that is `xtask`).

pub mod act;
pub mod api;
pub mod baseline;
pub mod capture;
pub mod ci_output;
pub mod cli;
pub mod cost;
pub mod decide;
pub mod detect;
pub mod fleet;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod redact;
pub mod report;
pub mod store;
pub mod supervise;
