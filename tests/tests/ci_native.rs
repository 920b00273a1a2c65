//! `sentry run` inside a CI job: the real binary, in fallback mode and unrecorded (`--no-db`),
//! with the environment a CI platform sets, writing its verdict where the platform shows it:
//! GitHub Actions annotations and job summary, GitLab's log section and report files, a
//! Buildkite annotation through a stand-in `buildkite-agent` that records what it was given.
//! Also: the examples in `examples/` parse, and every sentry command line in them is one the
//! real CLI accepts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sentry_tests::sentry_bin;

/// sentry's status when it stopped the command.
const EXIT_STOPPED: i32 = 124;

/// Two lines forever, one carrying a password: the output-loop detector stops it within
/// seconds under the default policy.
const LEAKY_LOOP: &str = r#"while :; do echo "connecting to db with password=hunter2"; echo "error: connection refused, retrying"; sleep 0.01; done"#;

/// The variables that pick a CI platform or tell where its files go: cleared for each run so
/// that the machine running the tests (itself a CI job, perhaps) does not leak into them.
const CI_VARS: &[&str] = &[
    "GITHUB_ACTIONS",
    "GITHUB_STEP_SUMMARY",
    "GITLAB_CI",
    "CI_PROJECT_DIR",
    "CI_JOB_NAME",
    "BUILDKITE",
    "BUILDKITE_JOB_ID",
    "SENTRY_DB",
    "RUNNER_TRACKING_ID",
    "CI_JOB_ID",
];

/// `sentry run --mode fallback --no-db <extra> -- sh -c <script>` in `dir` with `env` set.
fn ci_run(dir: &Path, env: &[(&str, &str)], extra: &[&str], script: &str) -> Output {
    let mut cmd = Command::new(sentry_bin());
    cmd.current_dir(dir)
        .args(["run", "--mode", "fallback", "--no-db"])
        .args(extra)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null());
    for var in CI_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("sentry can be started")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("expected {} to exist: {e}", path.display()))
}

#[test]
fn github_runaway_gets_an_error_annotation_and_a_redacted_summary() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("step_summary.md");
    let out = ci_run(
        dir.path(),
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_STEP_SUMMARY", &summary.to_string_lossy()),
        ],
        &[],
        LEAKY_LOOP,
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(EXIT_STOPPED), "stderr: {stderr}");
    let commands: Vec<&str> = stdout.lines().filter(|l| l.starts_with("::")).collect();
    assert!(
        commands
            .iter()
            .any(|l| l.starts_with("::error title=sentry stopped a runaway%3A output loop::")),
        "an ::error annotation on stdout; workflow commands: {commands:#?}\nstderr: {stderr}"
    );
    assert!(
        commands.iter().all(|l| !l.contains("hunter2")),
        "annotations are redacted: {commands:#?}"
    );
    let md = read(&summary);
    assert!(
        md.starts_with("### sentry: runaway stopped\n"),
        "summary: {md}"
    );
    assert!(
        md.contains("connecting to db with password=[REDACTED:password]"),
        "the repeating line, redacted, in the summary: {md}"
    );
    assert!(
        !md.contains("hunter2"),
        "the secret is not in the summary: {md}"
    );
    assert!(md.contains("#### Decision timeline"), "summary: {md}");
    assert!(md.contains("| kill |"), "summary: {md}");
    assert!(md.len() <= 64 * 1024, "{} bytes", md.len());
}

#[test]
fn github_healthy_run_gets_a_short_all_clear_and_no_annotation() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("step_summary.md");
    let out = ci_run(
        dir.path(),
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_STEP_SUMMARY", &summary.to_string_lossy()),
        ],
        &[],
        "echo hello",
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stdout.contains("hello"), "stdout: {stdout}");
    assert!(
        !stdout.lines().any(|l| l.trim_start().starts_with("::")),
        "no workflow command for a healthy run: {stdout}"
    );
    let md = read(&summary);
    assert!(md.starts_with("### sentry: all clear\n"), "summary: {md}");
    assert!(md.len() < 2048, "short: {} bytes\n{md}", md.len());
    assert!(md.contains("exited with 0"), "summary: {md}");
}

#[test]
fn github_summary_is_appended_to_what_earlier_steps_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("step_summary.md");
    std::fs::write(&summary, "## Tests\n\n42 passed\n").unwrap();
    for _ in 0..2 {
        let out = ci_run(
            dir.path(),
            &[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_STEP_SUMMARY", &summary.to_string_lossy()),
            ],
            &[],
            "true",
        );
        assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    }
    let md = read(&summary);
    assert!(
        md.starts_with("## Tests\n\n42 passed\n### sentry: all clear\n"),
        "summary: {md}"
    );
    assert_eq!(
        md.matches("### sentry: all clear").count(),
        2,
        "summary: {md}"
    );
}

#[test]
fn github_output_is_off_outside_ci_and_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("step_summary.md");
    let out = ci_run(
        dir.path(),
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_STEP_SUMMARY", &summary.to_string_lossy()),
        ],
        &["--ci-output", "off"],
        "true",
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(!summary.exists(), "--ci-output off writes nothing");
    // Outside CI (no GITHUB_ACTIONS), `auto` writes nothing either.
    let out = ci_run(
        dir.path(),
        &[("GITHUB_STEP_SUMMARY", &summary.to_string_lossy())],
        &[],
        "true",
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(!summary.exists(), "auto outside CI writes nothing");
}

#[test]
fn an_unwritable_summary_is_one_line_and_keeps_the_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let out = ci_run(
        dir.path(),
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_STEP_SUMMARY", "/nonexistent/dir/summary.md"),
        ],
        &[],
        "exit 3",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "the command's status: {stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("/nonexistent/dir/summary.md"))
        .collect();
    assert_eq!(lines.len(), 1, "stderr: {stderr}");
    assert!(
        lines[0].starts_with("sentry: cannot append the job summary"),
        "{}",
        lines[0]
    );
}

#[test]
fn an_unknown_platform_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = ci_run(dir.path(), &[], &["--ci-output", "jenkins"], "true");
    assert_eq!(out.status.code(), Some(2), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("possible values"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn gitlab_runaway_gets_a_log_section_a_report_and_code_quality() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().to_string_lossy().into_owned();
    let out = ci_run(
        dir.path(),
        &[
            ("GITLAB_CI", "true"),
            ("CI_PROJECT_DIR", &project),
            ("CI_JOB_NAME", "test"),
        ],
        &[],
        LEAKY_LOOP,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_STOPPED), "stderr: {stderr}");
    let start = stderr
        .find("\x1b[0Ksection_start:")
        .unwrap_or_else(|| panic!("a section start on stderr: {stderr:?}"));
    let section = &stderr[start..];
    assert!(
        section.contains(":sentry_summary[collapsed=true]\r\x1b[0Ksentry: runaway stopped\n"),
        "{section:?}"
    );
    let end = section
        .find("\x1b[0Ksection_end:")
        .unwrap_or_else(|| panic!("a section end on stderr: {section:?}"));
    assert!(
        section[end..].contains(":sentry_summary\r\x1b[0K"),
        "{section:?}"
    );
    assert!(!section.contains("hunter2"), "{section:?}");

    let report: serde_json::Value =
        serde_json::from_str(&read(&dir.path().join("sentry-report.json"))).expect("JSON report");
    let incidents = report["incidents"].as_array().expect("an incidents array");
    assert!(!incidents.is_empty(), "report: {report}");
    assert_eq!(report["stopped_by_sentry"], true, "report: {report}");
    let quality_text = read(&dir.path().join("gl-code-quality-sentry.json"));
    assert!(!quality_text.contains("hunter2"), "{quality_text}");
    let quality: serde_json::Value = serde_json::from_str(&quality_text).expect("JSON");
    let issues = quality.as_array().expect("a Code Quality array");
    assert_eq!(issues.len(), incidents.len(), "{quality}");
    for issue in issues {
        for key in ["description", "check_name", "fingerprint", "severity"] {
            assert!(issue[key].is_string(), "{key} in {issue}");
        }
        assert_eq!(issue["location"]["path"], ".gitlab-ci.yml");
        assert_eq!(issue["location"]["lines"]["begin"], 1);
    }
    assert!(
        issues.iter().any(|i| i["severity"] == "critical"),
        "the stop is critical: {quality}"
    );
}

#[test]
fn gitlab_healthy_run_writes_an_empty_code_quality_report_where_asked() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let given = out_dir.join("sentry.json");
    let out = ci_run(
        dir.path(),
        &[("GITLAB_CI", "true")],
        &["--ci-report", &given.to_string_lossy()],
        "echo hello",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("sentry: all clear"), "stderr: {stderr}");
    let report: serde_json::Value = serde_json::from_str(&read(&given)).expect("JSON report");
    assert_eq!(
        report["incidents"],
        serde_json::json!([]),
        "report: {report}"
    );
    let quality: serde_json::Value =
        serde_json::from_str(&read(&out_dir.join("gl-code-quality-sentry.json"))).expect("JSON");
    assert_eq!(quality, serde_json::json!([]));
    assert!(!dir.path().join("sentry-report.json").exists());
}

/// A directory holding an executable `buildkite-agent` that records its argv and stdin.
fn fake_buildkite_agent(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let agent = bin.join("buildkite-agent");
    std::fs::write(
        &agent,
        "#!/bin/sh\nd=$(dirname \"$0\")\nprintf '%s\\n' \"$@\" > \"$d/argv\"\ncat > \"$d/stdin\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn buildkite_runaway_is_annotated_as_an_error_with_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_buildkite_agent(dir.path());
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    );
    let out = ci_run(
        dir.path(),
        &[
            ("BUILDKITE", "true"),
            ("BUILDKITE_JOB_ID", "0190-ab"),
            ("PATH", &path),
        ],
        &[],
        LEAKY_LOOP,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_STOPPED), "stderr: {stderr}");
    assert!(
        stderr.contains("\n--- sentry summary\n  sentry: runaway stopped\n"),
        "a log group on stderr: {stderr}"
    );
    let argv = read(&bin.join("argv"));
    assert_eq!(
        argv, "annotate\n--style\nerror\n--context\nsentry-0190-ab\n",
        "argv of buildkite-agent"
    );
    let body = read(&bin.join("stdin"));
    assert!(body.starts_with("### sentry: runaway stopped\n"), "{body}");
    assert!(body.contains("password=[REDACTED:password]"), "{body}");
    assert!(!body.contains("hunter2"), "{body}");
}

// ---- examples/ ----

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Keys whose values are shell commands: GitHub's `run`, GitLab's `script` (and its before and
/// after), Buildkite's `command`/`commands`.
const COMMAND_KEYS: &[&str] = &[
    "run",
    "script",
    "before_script",
    "after_script",
    "command",
    "commands",
];

/// Every string scalar in a YAML document, depth first, and those under a command key.
fn strings(
    doc: &yaml_rust2::Yaml,
    in_command: bool,
    all: &mut Vec<String>,
    commands: &mut Vec<String>,
) {
    use yaml_rust2::Yaml;
    match doc {
        Yaml::String(s) => {
            all.push(s.clone());
            if in_command {
                commands.push(s.clone());
            }
        }
        Yaml::Array(items) => items
            .iter()
            .for_each(|i| strings(i, in_command, all, commands)),
        Yaml::Hash(map) => map.iter().for_each(|(k, v)| {
            let is_command = k.as_str().is_some_and(|k| COMMAND_KEYS.contains(&k));
            strings(k, false, all, commands);
            strings(v, is_command, all, commands);
        }),
        _ => {}
    }
}

/// Splits one shell line into words: whitespace, single and double quotes (no expansion).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The sentry invocations (arguments after `sentry`) in a block of shell text.
fn sentry_invocations(script: &str) -> Vec<Vec<String>> {
    let joined = script.replace("\\\n", " ");
    joined
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let words = shell_words(line);
            let at = words
                .iter()
                .position(|w| w == "sentry" || w.ends_with("/sentry"))?;
            let args = words[at + 1..].to_vec();
            let sub = args.first()?;
            sub.chars().all(|c| c.is_ascii_lowercase()).then_some(args)
        })
        .collect()
}

/// Checks one invocation against the real CLI: a `sentry run` runs for real with its command
/// replaced by `true`; anything else must parse up to an appended `--help`.
fn check_invocation(file: &str, args: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(sentry_bin());
    cmd.current_dir(dir.path()).stdin(Stdio::null());
    for var in CI_VARS {
        cmd.env_remove(var);
    }
    cmd.env("SENTRY_DB", dir.path().join("sentry.db"))
        .env("CI_PROJECT_DIR", dir.path());
    if args[0] == "run" {
        let dashes = args
            .iter()
            .position(|a| a == "--")
            .unwrap_or_else(|| panic!("{file}: `sentry {}` has no `--`", args.join(" ")));
        assert!(dashes + 1 < args.len(), "{file}: no command after `--`");
        cmd.args(&args[..dashes]).args(["--", "true"]);
    } else {
        cmd.args(args).arg("--help");
    }
    let out = cmd.output().expect("sentry can be started");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{file}: `sentry {}` is refused by the CLI:\n{}",
        args.join(" "),
        text(&out.stderr)
    );
}

#[test]
fn examples_parse_and_their_sentry_commands_are_accepted() {
    let examples = workspace().join("examples");
    let mut checked = Vec::new();
    for (name, must_have) in [
        ("github-actions.yml", &["run", "watch"][..]),
        ("gitlab-ci.yml", &["run"][..]),
        ("buildkite-pipeline.yml", &["run"][..]),
    ] {
        let path = examples.join(name);
        let docs = yaml_rust2::YamlLoader::load_from_str(&read(&path))
            .unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"));
        assert!(!docs.is_empty(), "{name} is empty");
        let (mut all, mut commands) = (Vec::new(), Vec::new());
        for doc in &docs {
            strings(doc, false, &mut all, &mut commands);
        }
        let invocations: Vec<Vec<String>> = commands
            .iter()
            .flat_map(|s| sentry_invocations(s))
            .collect();
        for sub in must_have {
            assert!(
                invocations.iter().any(|a| a[0] == *sub),
                "{name} shows `sentry {sub}`; found {invocations:?}"
            );
        }
        for args in &invocations {
            check_invocation(name, args);
            checked.push(format!("{name}: sentry {}", args.join(" ")));
        }
        // Files the example points at exist in the repository.
        for s in &all {
            for word in s.split_whitespace() {
                if word.starts_with("deploy/") || word.starts_with("examples/") {
                    assert!(
                        workspace().join(word).exists(),
                        "{name} refers to missing {word}"
                    );
                }
            }
        }
    }
    // The systemd unit the self-hosted example installs runs an accepted `sentry watch`.
    let unit = read(&workspace().join("deploy/systemd/sentry-watch.service"));
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has ExecStart");
    let args = sentry_invocations(exec);
    assert_eq!(args.len(), 1, "{exec}");
    assert_eq!(args[0][..3], ["watch", "--discover", "ci"], "{exec}");
    check_invocation("sentry-watch.service", &args[0]);
    eprintln!("checked:\n{}", checked.join("\n"));
}

#[test]
fn shell_words_and_invocations_are_found() {
    assert_eq!(
        shell_words(r#"sudo sentry run --ci-report 'a b.json' -- make "test all""#),
        [
            "sudo",
            "sentry",
            "run",
            "--ci-report",
            "a b.json",
            "--",
            "make",
            "test all"
        ]
    );
    let found = sentry_invocations("set -e\n# sentry run -- ignored\nsudo -E sentry run \\\n  --ci-output github -- make test\nsentry watch --discover ci\n");
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        found[0],
        ["run", "--ci-output", "github", "--", "make", "test"]
    );
    assert_eq!(found[1], ["watch", "--discover", "ci"]);
}
