//! The `sentry` command line.

use std::process::ExitCode;

fn main() -> ExitCode {
    sentry::cli::main()
}
