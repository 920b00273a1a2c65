//! Throughput of the output pipeline (line assembly + normalisation + loop detection) on one
//! core, over generated ~80-byte log lines of realistic kinds. Prints lines/s, MB/s and the
//! peak resident memory after a long input, then the same figures as one JSON line that
//! `cargo xtask bench detect` parses. Target: at least 1,000,000 lines/s.
//!
//! Run with `cargo bench -p sentry --bench detect_throughput` (optionally `-- LINES [KIND]`).
//! KIND 0 to 7 generates lines of that kind only: kind 4, an access log, repeats one template on
//! every line, so the loop detector rescores a one-line cycle on every line (its worst case).

use std::time::{Duration, Instant};

use sentry::detect::OutputPipeline;

/// A deterministic generator (xorshift) so every run measures the same input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Appends one realistic line of about 80 bytes, of kind `kind` (0 to 7) or of a random kind.
fn gen_line(rng: &mut Rng, i: u64, kind: Option<u64>, out: &mut Vec<u8>) {
    use std::io::Write;
    let r = rng.next();
    let s = (i / 10) % 60;
    let ms = r % 1000;
    // Write errors into a Vec cannot happen; the result is ignored on purpose.
    let _ = match kind.unwrap_or(r) % 8 {
        0 => writeln!(out, "2024-05-01T10:00:{s:02}.{ms:03}Z INFO  server: GET /api/v1/items/{} 200 {}ms", r % 5000, r % 90),
        1 => writeln!(out, "2024-05-01T10:00:{s:02}.{ms:03}Z WARN  pool: connection {} idle for {}s, closing", r % 64, r % 300),
        2 => writeln!(out, "epoch 3 step {i} loss {:.4} lr 0.0003 grad_norm {:.3} tokens/s {}", (r % 10000) as f64 / 5000.0, (r % 977) as f64 / 100.0, r % 90000),
        3 => writeln!(out, "   Compiling crate-{} v{}.{}.{} (/home/dev/src/crate-{})", r % 700, r % 3, r % 20, r % 9, r % 700),
        4 => writeln!(out, "10.0.{}.{} - - [01/May/2024:10:00:{s:02} +0000] \"GET /static/app.js HTTP/1.1\" 200 {}", r % 255, (r >> 8) % 255, r % 90000),
        5 => writeln!(out, "ERROR worker-{}: request {:08x}-{:04x}-4abc-8def-{:012x} failed: timeout", r % 16, r as u32, (r >> 32) as u16, r >> 16),
        6 => writeln!(out, "Downloading https://files.example.com/pkgs/pkg-{}.tar.gz ({} kB) {}%", r % 100000, r % 4096, r % 100),
        _ => writeln!(out, "test tests::module_{}::case_{} ... ok <{} us>", r % 40, r % 500, r % 1000),
    };
}

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn main() {
    // `cargo bench` adds `--bench`: only numbers are ours.
    let mut numbers = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<u64>().ok());
    let lines = numbers.next().unwrap_or(3_000_000);
    let kind = numbers.next();

    // Output is generated in ~64 KiB writes (as a pipe or PTY delivers it) and only the
    // pipeline is timed; the input is never held whole, so the peak RSS is the pipeline's.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut buf: Vec<u8> = Vec::with_capacity(70 * 1024);
    let mut pipeline = OutputPipeline::default();
    let mut sink = 0u64;
    let mut seen = 0u64;
    let mut bytes = 0usize;
    let mut busy = Duration::ZERO;
    let mut i = 0u64;
    let mut n = 0u64;
    while i < lines {
        buf.clear();
        while buf.len() < 64 * 1024 && i < lines {
            gen_line(&mut rng, i, kind, &mut buf);
            i += 1;
        }
        bytes += buf.len();
        let at = Duration::from_millis(n);
        n += 1;
        let start = Instant::now();
        pipeline.push_bytes(7, 1, at, &buf, |_, f| {
            seen += 1;
            sink += u64::from(f.is_some());
        });
        busy += start.elapsed();
    }
    let start = Instant::now();
    pipeline.flush(|_, _| seen += 1);
    busy += start.elapsed();
    let secs = busy.as_secs_f64();

    let lps = seen as f64 / secs;
    let mbps = bytes as f64 / secs / 1e6;
    let rss = peak_rss_bytes();
    let c = pipeline.progress_counters();
    println!(
        "detect throughput: {seen} lines, {:.1} MB in {secs:.3} s (one core)",
        bytes as f64 / 1e6
    );
    println!("  {lps:.0} lines/s, {mbps:.1} MB/s (target >= 1,000,000 lines/s)");
    println!(
        "  novel lines {} of {}, loop findings scored {sink}",
        c.novel_lines, c.lines
    );
    match rss {
        Some(r) => println!(
            "  peak RSS {:.1} MiB for {:.1} MB of input",
            r as f64 / 1048576.0,
            bytes as f64 / 1e6
        ),
        None => println!("  peak RSS unavailable (no /proc/self/status)"),
    }
    println!(
        "{{\"lines\":{seen},\"bytes\":{bytes},\"seconds\":{secs:.6},\"lines_per_s\":{lps:.0},\"mb_per_s\":{mbps:.2},\"peak_rss_bytes\":{}}}",
        rss.map_or("null".to_owned(), |r| r.to_string())
    );
}
