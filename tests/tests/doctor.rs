//! `sentry doctor` against the real host: its verdict agrees with what `sentry run` does, it
//! sees the cgroup layout the host has, an unprivileged user is told why kernel mode is out
//! of reach, and it changes nothing.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sentry_tests::{kernel_mode_unavailable, sentry_bin};
use serde_json::Value;

/// uid and gid of `nobody` / `nogroup` on Debian and most distributions.
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn doctor(command: &mut Command) -> Output {
    let out = command
        .stdin(Stdio::null())
        .output()
        .expect("sentry doctor can be started");
    assert!(
        out.status.success(),
        "sentry doctor must exit 0 whatever the host supports; got {}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn doctor_json(command: &mut Command) -> Value {
    let out = doctor(command.arg("--json"));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sentry doctor --json printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn doctor_command() -> Command {
    let mut command = Command::new(sentry_bin());
    command.arg("doctor");
    command
}

fn check<'a>(diagnosis: &'a Value, name: &str) -> &'a Value {
    diagnosis["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check named {name} in {diagnosis:#}"))
}

/// The cgroup layout read straight from mountinfo, independently of sentry's parser:
/// (cgroup2 mount point, whether v1 hierarchies are mounted too).
fn host_cgroup_layout() -> (Option<String>, bool) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut cgroup2 = None;
    let mut v1 = false;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        match right.split_whitespace().next() {
            Some("cgroup2") if cgroup2.is_none() => {
                cgroup2 = left.split_whitespace().nth(4).map(String::from);
            }
            Some("cgroup") => v1 = true,
            _ => {}
        }
    }
    (cgroup2, v1)
}

#[test]
fn doctor_as_root_agrees_with_what_run_does() {
    if !is_root() {
        eprintln!("SKIPPED: needs root, to compare doctor's verdict with a kernel-mode run");
        return;
    }
    let diagnosis = doctor_json(&mut doctor_command());
    match kernel_mode_unavailable() {
        None => assert_eq!(
            diagnosis["mode"], "kernel",
            "`sentry run --mode kernel` works here, but doctor says otherwise: {diagnosis:#}"
        ),
        Some(run_error) => {
            assert_eq!(
                diagnosis["mode"], "fallback",
                "`sentry run --mode kernel` fails here ({run_error}), but doctor says: \
                 {diagnosis:#}"
            );
            eprintln!("kernel mode is unavailable here, and doctor agrees: {run_error}");
        }
    }
    let privileges = check(&diagnosis, "privileges");
    assert_eq!(privileges["status"], "ok", "{privileges}");
    assert!(
        privileges["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("euid 0")),
        "{privileges}"
    );

    let layout = check(&diagnosis, "cgroup-layout");
    let detail = layout["detail"].as_str().unwrap_or_default();
    match host_cgroup_layout() {
        (Some(root), true) => assert!(
            detail.starts_with(&format!("hybrid: cgroup2 at {root}")),
            "this host is hybrid (cgroup2 at {root} beside v1), doctor says: {layout}"
        ),
        (Some(root), false) => assert!(
            detail.starts_with(&format!("pure cgroup v2 at {root}")),
            "this host is pure v2 at {root}, doctor says: {layout}"
        ),
        (None, _) => assert_eq!(layout["status"], "fail", "no cgroup2 here: {layout}"),
    }
}

/// Copies the binary where `nobody` can run it (the target directory may sit under a home
/// that only root can enter).
fn binary_for_nobody() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let bin = dir.path().join("sentry");
    std::fs::copy(sentry_bin(), &bin).expect("the sentry binary can be copied");
    for (path, mode) in [(dir.path(), 0o755), (bin.as_path(), 0o755)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .expect("permissions can be set");
    }
    (dir, bin)
}

fn as_nobody(bin: &Path) -> Command {
    let mut command = Command::new(bin);
    command
        .arg("doctor")
        .current_dir("/")
        .uid(NOBODY)
        .gid(NOBODY);
    command
}

#[test]
fn doctor_as_nobody_reports_the_fallback_for_lack_of_privileges() {
    if !is_root() {
        eprintln!("SKIPPED: needs root, to run doctor as the unprivileged user nobody");
        return;
    }
    let (_dir, bin) = binary_for_nobody();
    let diagnosis = doctor_json(&mut as_nobody(&bin));
    assert_eq!(diagnosis["mode"], "fallback", "{diagnosis:#}");
    let privileges = check(&diagnosis, "privileges");
    assert_eq!(privileges["status"], "fail", "{privileges}");
    assert!(
        privileges["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("euid 65534") && d.contains("CAP_BPF")),
        "{privileges}"
    );
    if check(&diagnosis, "ebpf-probe")["status"] != "ok" {
        eprintln!("this sentry has no eBPF probe, so that is the first reason; not checking it");
        return;
    }
    let reason = diagnosis["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("kernel mode needs root") && reason.contains("uid 65534"),
        "the reason should be the missing privileges, got: {reason}"
    );
    let fix = diagnosis["fix"].as_str().unwrap_or_default();
    assert!(
        fix.starts_with("sudo ") && fix.ends_with(" run -- CMD"),
        "the fix should be a sudo command line, got: {fix}"
    );

    let text = doctor(&mut as_nobody(&bin));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("sentry run will use: fallback (PTY + /proc): kernel mode needs root"),
        "the text verdict should name the fallback and why:\n{stdout}"
    );
    assert!(
        stdout.contains("to get kernel mode: sudo "),
        "the text should end with the command to get kernel mode:\n{stdout}"
    );
}

#[test]
fn doctor_prints_one_line_per_check_then_the_verdict() {
    let diagnosis = doctor_json(&mut doctor_command());
    let checks = diagnosis["checks"].as_array().expect("checks is an array");
    let out = doctor(&mut doctor_command());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines.len() > checks.len(),
        "expected {} check lines and a verdict:\n{stdout}",
        checks.len()
    );
    for (line, check) in lines.iter().zip(checks) {
        let status = check["status"].as_str().unwrap_or_default();
        let name = check["name"].as_str().unwrap_or_default();
        assert!(
            line.starts_with(status) && line.contains(name),
            "line {line:?} should show {status} {name}"
        );
        assert!(
            ["ok", "info", "warn", "fail"].contains(&status),
            "unknown status in {check}"
        );
        assert_eq!(
            line.contains(" → "),
            !check["hint"].is_null(),
            "a hint is printed exactly when there is one: {line:?} vs {check}"
        );
    }
    assert_eq!(lines[checks.len()], "", "a blank line before the verdict");
    assert!(
        lines[checks.len() + 1].starts_with("sentry run will use: "),
        "the verdict follows the checks:\n{stdout}"
    );
}

/// Entries under the cgroup2 root and under sentry's directory in it.
fn cgroup_entries() -> Vec<PathBuf> {
    let Some(root) = host_cgroup_layout().0 else {
        return Vec::new();
    };
    let root = PathBuf::from(root);
    let mut entries = Vec::new();
    for dir in [root.clone(), root.join("sentry")] {
        if let Ok(read) = std::fs::read_dir(&dir) {
            entries.extend(read.flatten().map(|e| e.path()));
        }
    }
    entries
}

#[test]
fn doctor_changes_nothing_on_the_host() {
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let cgroups_before = cgroup_entries();
    let child = doctor_command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sentry doctor can be started");
    let doctor_runs = format!("run-{}-", child.id());
    let out = child
        .wait_with_output()
        .expect("sentry doctor can be waited for");
    assert!(out.status.success(), "sentry doctor failed: {}", out.status);
    assert_eq!(
        std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
        mounts_before,
        "doctor must not mount anything"
    );
    // Other sentry processes (other tests, other users of the host) may start runs meanwhile:
    // a new `run-<pid>-<n>` cgroup is doctor's only if it carries doctor's pid.
    let created: Vec<PathBuf> = cgroup_entries()
        .into_iter()
        .filter(|path| !cgroups_before.contains(path))
        .filter(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            !name.starts_with("run-") || name.starts_with(&doctor_runs)
        })
        .collect();
    assert!(
        created.is_empty(),
        "doctor must not create cgroups, but these appeared: {created:?}"
    );
}

#[test]
fn doctor_help_states_the_exit_status() {
    let out = doctor(doctor_command().arg("--help"));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Exit status: 0 whatever the host supports"),
        "--help should document the exit status:\n{help}"
    );
    assert!(
        help.contains("--json"),
        "--help should list --json:\n{help}"
    );
}
