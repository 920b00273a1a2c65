//! Detection: turns samples and output into findings, each with a 0..1 score and evidence.

pub mod cpu;
pub mod fork;
pub mod memory;
pub mod progress;
pub mod resource;
pub mod stall;
pub mod window;
