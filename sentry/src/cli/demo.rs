//! `sentry demo`: a self-contained demonstration on this machine. Three supervised runs of
//! programs built into the binary (`sentry workload …`): a deploy script that turns into a retry
//! loop (caught and stopped), a CPU-heavy job that makes progress (left alone, even under a CPU
//! limit), and an import stuck on a stale lock that recovers when sentry restarts it.

use std::path::Path;
use std::process::{Command, ExitCode};

use clap::Args;

/// Arguments of `sentry demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Capture mode for the demo runs (auto: kernel as root, fallback otherwise).
    #[arg(long, default_value = "auto")]
    pub mode: String,
}

struct Scene {
    title: &'static str,
    expect: &'static str,
    flags: &'static [&'static str],
    workload: &'static str,
    /// Exit status that means the scene went as it should.
    want: i32,
}

const SCENES: [Scene; 3] = [
    Scene {
        title: "1/3  A deploy script that turns into a retry loop",
        expect: "sentry should stop it within a few seconds (exit status 124)",
        flags: &[],
        workload: "retry-loop",
        want: 124,
    },
    Scene {
        title: "2/3  A CPU-heavy job that makes progress, under --max-cpu 50",
        expect: "sentry should leave it alone: it burns CPU but reports progress",
        flags: &["--max-cpu", "50", "--window", "3"],
        workload: "crunch",
        want: 0,
    },
    Scene {
        title: "3/3  An import stuck on a stale lock, with --action restart",
        expect: "sentry should restart it once, and the second run succeeds",
        flags: &["--action", "restart", "--max-restarts", "2"],
        workload: "flaky-import",
        want: 0,
    },
];

/// Runs the demonstration; exits 0 when every scene went as expected.
pub fn run(args: &DemoArgs) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => {
            eprintln!("sentry demo: cannot find its own binary: {err}");
            return ExitCode::from(1);
        }
    };
    let state = match tempfile_dir() {
        Ok(dir) => dir,
        Err(err) => {
            eprintln!("sentry demo: cannot create a temporary directory: {err}");
            return ExitCode::from(1);
        }
    };
    let mut ok = true;
    for scene in &SCENES {
        eprintln!("\n=== {} ===\n    {}\n", scene.title, scene.expect);
        let status = Command::new(&exe)
            .arg("run")
            .args(["--mode", &args.mode])
            .args(scene.flags)
            .arg("--")
            .arg(&exe)
            .args(["workload", scene.workload, "--state"])
            .arg(&state)
            .status();
        let code = match status {
            Ok(status) => status.code().unwrap_or(-1),
            Err(err) => {
                eprintln!("sentry demo: cannot start sentry run: {err}");
                return ExitCode::from(1);
            }
        };
        let verdict = if code == scene.want {
            "as expected"
        } else {
            ok = false;
            "NOT as expected"
        };
        eprintln!(
            "\n--> exit status {code}: {verdict} (wanted {})",
            scene.want
        );
        if code == 125 {
            eprintln!("    (125: sentry itself could not run; `sentry doctor` says why)");
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&state);
    let store = crate::store::default_path().map_or_else(
        |_| "the evidence store".to_string(),
        |p| p.display().to_string(),
    );
    eprintln!(
        "\nThat was sentry: loops stopped, honest work left alone, a stuck job recovered.\n\
         Every run was recorded in {store}: list the incidents with `sentry incidents`,\n\
         and watch and control runs in the browser with `sentry dashboard --open` (http://127.0.0.1:3001).\n\
         Try it on your own commands: `sentry run -- CMD`, judge saved logs with `sentry analyze FILE`,\n\
         and check this host with `sentry doctor`."
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("sentry-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // The workloads may run as another user (fallback mode under sudo -u).
    set_mode(&dir, 0o777)?;
    Ok(dir)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}
