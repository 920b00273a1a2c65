//! Progress signals that come from the output side of detection and are handed to the resource
//! detectors, so that burning CPU while printing new things is not mistaken for a runaway.

use serde::{Deserialize, Serialize};

/// Cumulative counts of logical output lines since the run started, filled by the supervisor
/// from the loop detector. A line is *novel* when its template was not seen recently (it is
/// not part of a repeating cycle); novel lines are the strongest sign of forward progress that
/// output gives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressSignals {
    /// Logical lines seen so far.
    pub lines: u64,
    /// Of those, lines that were novel.
    pub novel_lines: u64,
}
