//! Detection: turns observations ([`OutputChunk`](crate::model::OutputChunk)s and
//! [`Sample`](crate::model::Sample)s) into [`Finding`](crate::model::Finding)s.
//!
//! The output pipeline is three stages: [`lines`] assembles chunks into logical lines,
//! [`normalize`] turns each line into a template with typed placeholders, and
//! [`output_loop`] looks for periodic template sequences and weighs progress against
//! repetition. This module decides nothing: `decide` turns findings into actions.

pub mod lines;
pub mod normalize;
#[path = "loop.rs"]
pub mod output_loop;
