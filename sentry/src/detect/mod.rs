//! Detection: turns observations ([`OutputChunk`](crate::model::OutputChunk)s and
//! [`Sample`](crate::model::Sample)s) into [`Finding`](crate::model::Finding)s, each with a
//! 0..1 score and evidence.
//!
//! The output pipeline is three stages: [`lines`] assembles chunks into logical lines,
//! [`normalize`] turns each line into a template with typed placeholders, and
//! [`output_loop`] looks for periodic template sequences and weighs progress against
//! repetition; [`OutputPipeline`] chains them. The resource detectors ([`cpu`], [`memory`],
//! [`stall`], [`fork`]) and the user's [`no_output`] timeout read samples. This module decides nothing: `decide` turns findings
//! into actions.

pub mod cpu;
pub mod fork;
pub mod lines;
pub mod memory;
pub mod no_output;
pub mod normalize;
#[path = "loop.rs"]
pub mod output_loop;
pub mod pipeline;
pub mod progress;
pub mod regression;
pub mod resource;
pub mod stall;
pub mod window;

pub use pipeline::OutputPipeline;
