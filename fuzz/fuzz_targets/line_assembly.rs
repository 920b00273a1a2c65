//! Fuzzes line assembly (and the normaliser and loop detector behind it): arbitrary bytes,
//! split into writes from a few streams, must never panic, must keep lines within the cap,
//! must account for every newline, and must produce valid sequence numbers.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sentry::detect::lines::{Limits, LineAssembler};
use sentry::detect::normalize::normalize;
use sentry::detect::output_loop::LoopDetector;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_line_bytes: 64,
        max_streams: 3,
        ..Limits::default()
    };
    let mut a = LineAssembler::new(limits);
    let mut d = LoopDetector::default();
    let mut expected_seq = 0u64;
    let mut check = |l: &sentry::detect::lines::Line| {
        expected_seq += 1;
        assert_eq!(l.seq, expected_seq);
        assert!(l.text.chars().count() <= 64, "cap exceeded: {}", l.text.len());
        assert!(!l.text.contains('\n'));
        assert!(l.original_len >= l.text.len().min(l.original_len));
        let n = normalize(&l.text);
        assert_eq!(normalize(&n.template).template, n.template);
        d.observe(l);
    };
    // The first bytes choose how the rest is split into writes and streams.
    let mut i = 0usize;
    let mut k = 0u64;
    while i < data.len() {
        let ctl = data[i];
        let len = (usize::from(ctl & 0x1f) + 1).min(data.len() - i);
        let pid = u32::from(ctl >> 5) % 5;
        a.push_bytes(pid, 1 + pid % 2, Duration::from_millis(k), &data[i..i + len], &mut check);
        i += len;
        k += 1;
    }
    a.flush(&mut check);
});
