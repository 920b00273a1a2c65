//! `sentry workload NAME` (hidden): the small programs `sentry demo` supervises, built into the
//! binary so the demo needs nothing else installed (no Python, no compiler).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

/// Which program to be.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Workload {
    /// A deploy script that does some real work, then retries a dead API forever.
    RetryLoop,
    /// A CPU-heavy job (prime sieve) that reports progress and finishes.
    Crunch,
    /// An import that loops on a stale lock the first time and succeeds once restarted.
    FlakyImport,
}

/// Arguments of `sentry workload`.
#[derive(Debug, Args)]
pub struct WorkloadArgs {
    /// The program to run.
    #[arg(value_enum)]
    pub name: Workload,
    /// Directory for state kept across restarts (flaky-import).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

/// Runs the workload.
pub fn run(args: &WorkloadArgs) -> ExitCode {
    let out = std::io::stdout();
    let mut out = out.lock();
    let result = match args.name {
        Workload::RetryLoop => retry_loop(&mut out),
        Workload::Crunch => crunch(&mut out),
        Workload::FlakyImport => flaky_import(&mut out, args.state.as_deref()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // A closed stdout (the supervisor stopped reading) ends the workload quietly.
        Err(_) => ExitCode::from(1),
    }
}

fn pause(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn retry_loop(out: &mut impl Write) -> std::io::Result<u8> {
    for (i, step) in [
        "resolving dependencies",
        "building image registry.example.test/shop/api:1.42.0",
        "pushing image (12 layers)",
        "rendering manifests for 3 regions",
    ]
    .iter()
    .enumerate()
    {
        writeln!(out, "deploy step {}/4: {step}", i + 1)?;
        out.flush()?;
        pause(250);
    }
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        let request = 0x5f3e_0000_u64.wrapping_add(attempt.wrapping_mul(2_654_435_761) & 0xffff);
        writeln!(
            out,
            "attempt {attempt}: POST https://api.example.test/v1/rollouts failed: 503 Service Unavailable (request id {request:08x}), retrying in 50ms"
        )?;
        out.flush()?;
        pause(50);
    }
}

fn crunch(out: &mut impl Write) -> std::io::Result<u8> {
    // Busy for about 8 s on any machine, reporting progress five times a second.
    const RUN_FOR: Duration = Duration::from_secs(8);
    const CHUNK: u64 = 5_000;
    let started = Instant::now();
    let mut last_report = started;
    let (mut primes, mut next) = (0u64, 2u64);
    while started.elapsed() < RUN_FOR {
        primes += (next..next + CHUNK).filter(|n| is_prime(*n)).count() as u64;
        next += CHUNK;
        if last_report.elapsed() >= Duration::from_millis(200) {
            last_report = Instant::now();
            writeln!(
                out,
                "sieve: {primes} primes below {next} ({:.1} s)",
                started.elapsed().as_secs_f64()
            )?;
            out.flush()?;
        }
    }
    writeln!(out, "done: {primes} primes below {next}")?;
    Ok(0)
}

fn is_prime(n: u64) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

fn flaky_import(out: &mut impl Write, state: Option<&std::path::Path>) -> std::io::Result<u8> {
    let dir = state.map_or_else(std::env::temp_dir, PathBuf::from);
    let marker = dir.join("sentry-demo-import-ran-once");
    if marker.exists() {
        let _ = std::fs::remove_file(&marker);
        for batch in 1..=6 {
            writeln!(out, "import batch {batch}/6: 500 rows committed")?;
            out.flush()?;
            pause(150);
        }
        writeln!(out, "import finished: 3000 rows")?;
        return Ok(0);
    }
    std::fs::write(&marker, b"1")?;
    writeln!(out, "import: opening /var/lib/shop/import.lock")?;
    loop {
        writeln!(
            out,
            "ERROR import.lock is held by pid 4242 (stale since 03:12:09), retrying in 20ms"
        )?;
        out.flush()?;
        pause(20);
    }
}
