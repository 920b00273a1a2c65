//! Drives the real `sentry analyze` binary on temporary files: verdicts, JSON shape, exit
//! statuses, stdin, unreadable files, gigantic lines and binary input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn sentry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sentry"))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    if let Err(e) = std::fs::write(&p, bytes) {
        panic!("cannot write {}: {e}", p.display());
    }
    p
}

fn run(cmd: &mut Command) -> Output {
    match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("cannot start sentry: {e}"),
    }
}

fn tmp() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("no temp dir: {e}"),
    }
}

fn retry_loop_log() -> String {
    let mut s = String::new();
    for i in 0..10 {
        s.push_str(&format!(
            "2024-05-01T10:00:0{i}Z starting job {i}: fetching index\n"
        ));
    }
    // A fast retry loop: about 60 ms per attempt, as "retrying in 50ms" says.
    for i in 0..40u64 {
        let ms = 10_000 + i * 60;
        s.push_str(&format!(
            "2024-05-01T10:00:{:02}.{:03}Z ERROR fetch https://registry.example.com/index failed: connection refused\n",
            ms / 1000,
            ms % 1000
        ));
        s.push_str(&format!(
            "2024-05-01T10:00:{:02}.{:03}Z INFO retrying in 50ms (attempt {})\n",
            (ms + 5) / 1000,
            (ms + 5) % 1000,
            i + 1
        ));
    }
    s
}

fn healthy_log() -> String {
    let mut s = String::new();
    for i in 0..300 {
        s.push_str(&format!(
            "epoch 2 step {} loss {:.4} lr 0.0003\n",
            i * 50,
            3.0 / (i as f64 + 2.0)
        ));
    }
    s.push_str("training finished\n");
    s
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| match serde_json::from_str(l) {
            Ok(v) => v,
            Err(e) => panic!("not JSON ({e}): {l}"),
        })
        .collect()
}

#[test]
fn runaway_and_healthy_files_get_their_verdicts_and_exit_1() {
    let d = tmp();
    let bad = write(d.path(), "loop.log", retry_loop_log().as_bytes());
    let good = write(d.path(), "train.log", healthy_log().as_bytes());
    let o = run(sentry().arg("analyze").arg(&bad).arg(&good));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {out}\nstderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("loop.log: runaway (output loop at line"),
        "{out}"
    );
    assert!(out.contains("period 2"), "{out}");
    assert!(out.contains("train.log: healthy"), "{out}");
}

#[test]
fn json_output_has_one_object_per_file_with_the_contract_fields() {
    let d = tmp();
    let bad = write(d.path(), "loop.log", retry_loop_log().as_bytes());
    let good = write(d.path(), "train.log", healthy_log().as_bytes());
    let o = run(sentry().args(["analyze", "--json"]).arg(&bad).arg(&good));
    let v = json_lines(&o);
    assert_eq!(v.len(), 2, "{v:?}");
    let r = &v[0];
    assert_eq!(r["verdict"], "runaway");
    assert_eq!(r["kind"], "output_loop");
    assert_eq!(r["period"], 2);
    assert_eq!(r["first_line"], 11);
    let line = r["line"].as_u64().unwrap_or(0);
    assert!(
        (11..=10 + 2 * 5).contains(&line),
        "fired at line {line}, want within 5 repeats"
    );
    assert!(r["repeats"].as_u64().unwrap_or(0) <= 5);
    assert_eq!(r["pattern"].as_array().map(Vec::len), Some(2));
    assert!(r["score"].as_f64().unwrap_or(0.0) >= 0.5);
    assert!(r["reasons"].as_array().is_some_and(|a| !a.is_empty()));
    assert!(r["file"].as_str().is_some_and(|f| f.ends_with("loop.log")));
    assert_eq!(v[1]["verdict"], "healthy");
    assert!(v[1]["line"].is_null());
}

#[test]
fn all_healthy_exits_0() {
    let d = tmp();
    let good = write(d.path(), "train.log", healthy_log().as_bytes());
    let o = run(sentry().arg("analyze").arg(&good));
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn stdin_is_read_with_dash() {
    let mut child = match sentry()
        .args(["analyze", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("cannot start sentry: {e}"),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(retry_loop_log().as_bytes());
    }
    let o = match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => panic!("sentry did not finish: {e}"),
    };
    let v = json_lines(&o);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(v[0]["file"], "-");
    assert_eq!(v[0]["verdict"], "runaway");
}

#[test]
fn unreadable_file_is_reported_others_still_analysed_exit_2() {
    let d = tmp();
    let good = write(d.path(), "train.log", healthy_log().as_bytes());
    let missing = d.path().join("nope.log");
    let o = run(sentry()
        .arg("analyze")
        .arg(&missing)
        .arg(&good)
        .arg(d.path()));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("cannot read") && err.contains("nope.log"),
        "{err}"
    );
    assert!(err.contains("is a directory"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("train.log: healthy"));
}

#[test]
fn gigantic_lines_and_binary_files_do_not_blow_up() {
    let d = tmp();
    let mut giant = vec![b'x'; 50 * 1024 * 1024];
    giant.push(b'\n');
    giant.extend_from_slice(b"done\n");
    let giant = write(d.path(), "giant.log", &giant);
    let bin: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let bin = write(d.path(), "blob.bin", &bin);
    let o = run(sentry().args(["analyze", "--json"]).arg(&giant).arg(&bin));
    let v = json_lines(&o);
    assert_eq!(o.status.code(), Some(0), "{v:?}");
    assert_eq!(v[0]["verdict"], "healthy");
    assert_eq!(v[0]["lines"], 2);
    assert_eq!(v[1]["verdict"], "healthy");
    assert!(v[1]["binary_lines"].as_u64().unwrap_or(0) > 0, "{:?}", v[1]);
}

#[test]
fn bad_policy_file_is_a_clear_error() {
    let d = tmp();
    let good = write(d.path(), "train.log", healthy_log().as_bytes());
    let pol = write(d.path(), "p.toml", b"[confidence]\nhigh = \"very\"\n");
    let o = run(sentry().arg("analyze").arg("--policy").arg(&pol).arg(&good));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("p.toml"), "{err}");
}
