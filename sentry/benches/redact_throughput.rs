//! Throughput of secret redaction on one core, over 1 MiB of generated text of three kinds:
//! clean log lines (the common case: one scan, nothing allocated), log lines with a fake
//! secret on every tenth line, and text that is nothing but secrets (the worst case). Prints
//! MB/s for `redact` and `contains_secret` on each.
//!
//! Run with `cargo bench -p sentry --bench redact_throughput` (optionally `-- ROUNDS`).

use std::hint::black_box;
use std::time::Instant;

use sentry::redact::{contains_secret, redact};

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

/// One ordinary log line of about 80 bytes.
fn clean_line(rng: &mut Rng, i: u64, out: &mut String) {
    use std::fmt::Write;
    let r = rng.next();
    // Writing into a String cannot fail; the result is ignored on purpose.
    let _ = match r % 6 {
        0 => writeln!(
            out,
            "2024-05-01T10:00:{:02}.{:03}Z INFO  server: GET /api/v1/items/{} 200 {}ms",
            i % 60,
            r % 1000,
            r % 5000,
            r % 90
        ),
        1 => writeln!(
            out,
            "epoch 3 step {i} loss {:.4} lr 0.0003 tokens/s {} max_tokens=4096",
            (r % 10000) as f64 / 5000.0,
            r % 90000
        ),
        2 => writeln!(
            out,
            "   Compiling crate-{} v{}.{}.{} (/home/dev/src/crate-{})",
            r % 700,
            r % 3,
            r % 20,
            r % 9,
            r % 700
        ),
        3 => writeln!(
            out,
            "ERROR worker-{}: request {:08x}-{:04x}-4abc-8def-{:012x} failed: the token expired",
            r % 16,
            r as u32,
            (r >> 32) as u16,
            r >> 16
        ),
        4 => writeln!(
            out,
            "commit {:016x}{:016x}{:08x} Merge pull request #{} from dev/branch",
            r,
            r.rotate_left(17),
            r as u32,
            r % 9000
        ),
        _ => writeln!(
            out,
            "Downloading https://files.example.com/pkgs/pkg-{}.tar.gz ({} kB) {}%",
            r % 100000,
            r % 4096,
            r % 100
        ),
    };
}

/// One line with a fake secret of a rotating kind.
fn secret_line(i: u64, out: &mut String) {
    const SECRETS: &[&str] = &[
        "export GITHUB_TOKEN=ghp_FAKE0123456789abcdefghijABCDEFGHIJ01",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "curl -H 'Authorization: Bearer opaque-token-0123456789' https://api.example.com",
        "connecting to postgres://app:s3cr3t-pw@db.internal:5432/app",
        "{\"user\": \"bob\", \"password\": \"hunter2\", \"port\": 5432}",
        "id_token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "OPENAI_API_KEY=sk-proj-FAKE0123456789abcdefghij_klmnopqrst-UVWXYZ0123456789",
        "Cookie: session=abc123; theme=dark",
    ];
    out.push_str(SECRETS[(i as usize) % SECRETS.len()]);
    out.push('\n');
}

fn text(mib: usize, every: Option<u64>) -> String {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = String::with_capacity(mib * 1024 * 1024 + 256);
    let mut i = 0;
    while out.len() < mib * 1024 * 1024 {
        match every {
            Some(n) if i % n == 0 => secret_line(i, &mut out),
            _ => clean_line(&mut rng, i, &mut out),
        }
        i += 1;
    }
    out
}

fn measure(name: &str, input: &str, rounds: u32) {
    let mb = input.len() as f64 / 1e6;
    let start = Instant::now();
    let mut markers = 0;
    for _ in 0..rounds {
        markers = black_box(redact(black_box(input)))
            .matches("[REDACTED:")
            .count();
    }
    let redact_s = start.elapsed().as_secs_f64() / f64::from(rounds);
    let start = Instant::now();
    for _ in 0..rounds {
        black_box(contains_secret(black_box(input)));
    }
    let contains_s = start.elapsed().as_secs_f64() / f64::from(rounds);
    println!(
        "{name:<18} {mb:.2} MB, {markers:>6} markers: redact {:>7.2} ms ({:>6.1} MB/s), contains_secret {:>7.2} ms ({:>6.1} MB/s)",
        redact_s * 1e3,
        mb / redact_s,
        contains_s * 1e3,
        mb / contains_s
    );
}

fn main() {
    // `cargo bench` adds `--bench`: only numbers are ours.
    let rounds = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<u32>().ok())
        .unwrap_or(10);
    measure("clean logs", &text(1, None), rounds);
    measure("1 line in 10", &text(1, Some(10)), rounds);
    measure("only secrets", &text(1, Some(1)), rounds);
}
