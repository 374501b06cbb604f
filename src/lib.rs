//! herald: an agent that turns file, process and infrastructure changes into
//! Prefect events, keeps each one in a crash-safe queue on local disk, and
//! forwards batches to an events endpoint.
//!
//! ```text
//!  sources/ ──Observation──▶ mapping/ ──Event──▶ queue/ ──bytes──▶ sink/
//! ```
//!
//! A source hands on [`observation::Observation`]s; the [`mapping::Mapper`]
//! turns each into a validated [`event::Event`] with its id assigned and
//! serializes it once; the queue keeps those bytes durably; a sink sends
//! them and acknowledges in order. [`agent`] wires the stages with bounded
//! channels and one cancellation token; no stage knows more than its
//! neighbours.
#![forbid(unsafe_code)]

pub mod agent;
pub mod cli;
pub mod config;
pub mod data_dir;
pub mod event;
pub mod identity;
pub mod liveness;
pub mod logging;
pub mod mapping;
pub mod metrics;
pub mod notify;
pub mod observation;
pub mod queue;
pub mod signals;
pub mod sink;
pub mod sources;
pub mod tls;
