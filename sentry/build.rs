//! Builds the eBPF probe (`sentry-ebpf`, nightly, `bpfel-unknown-none`) with aya-build and
//! hands its object to the crate as `$OUT_DIR/sentry-probe` under `cfg(sentry_ebpf)`.
//!
//! When the eBPF toolchain (nightly with `rust-src`, `bpf-linker`) is missing, the build goes on
//! without the kernel backend and says so, unless `SENTRY_REQUIRE_EBPF=1`, which makes it fail.
//! Either way the message names `cargo xtask setup`; never a linker error from deep inside.
//!
//! It also writes the table of the dashboard's built assets (`dashboard/dist`, made by
//! `cargo xtask dashboard`) to `$OUT_DIR/dashboard_assets.rs`, for the binary to embed. It
//! never runs npm itself, so a cargo build stays offline-capable; without `dist` the table is
//! empty and `sentry dashboard` serves a page that says how to build the UI.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const SETUP_HINT: &str =
    "run `cargo xtask setup` (installs nightly rust-src and bpf-linker) and rebuild";

fn main() {
    embed_dashboard();
    println!("cargo::rustc-check-cfg=cfg(sentry_ebpf)");
    println!("cargo:rerun-if-env-changed=SENTRY_REQUIRE_EBPF");
    println!("cargo:rerun-if-env-changed=PATH");
    let require = env::var("SENTRY_REQUIRE_EBPF").is_ok_and(|v| v == "1" || v == "true");

    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "linux" {
        // The kernel backend is Linux-only; other targets build without it silently.
        return;
    }

    let manifest_dir = match env::var_os("CARGO_MANIFEST_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => fail("CARGO_MANIFEST_DIR is not set; build sentry through cargo"),
    };
    let workspace = manifest_dir.parent().unwrap_or(&manifest_dir).to_path_buf();
    let ebpf_dir = workspace.join("sentry-ebpf");
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("sentry-common/src").display()
    );

    if let Err(missing) = ebpf_toolchain_present() {
        let message = format!(
            "building sentry WITHOUT its eBPF probe (kernel mode disabled): {missing}; {SETUP_HINT}"
        );
        if require {
            fail(&format!(
                "SENTRY_REQUIRE_EBPF=1 but {missing}; {SETUP_HINT}"
            ));
        }
        println!("cargo:warning={message}");
        // Watch where the missing pieces will appear, so that a plain rebuild after
        // `cargo xtask setup` picks the probe up (cargo reruns a build script while a watched
        // path does not exist).
        if let Some(path) = env::var_os("PATH") {
            for dir in env::split_paths(&path) {
                println!(
                    "cargo:rerun-if-changed={}",
                    dir.join("bpf-linker").display()
                );
            }
        }
        return;
    }

    // aya-build runs `cargo build --package sentry-ebpf` in the current directory; the eBPF
    // crate is its own workspace (excluded from ours), so it must run from inside it.
    if let Err(err) = env::set_current_dir(&ebpf_dir) {
        fail(&format!("cannot enter {}: {err}", ebpf_dir.display()));
    }
    let Some(root_dir) = ebpf_dir.to_str() else {
        fail(&format!("{} is not valid UTF-8", ebpf_dir.display()));
    };
    let package = aya_build::Package {
        name: "sentry-ebpf",
        root_dir,
        ..Default::default()
    };
    if let Err(err) = aya_build::build_ebpf([package], aya_build::Toolchain::Nightly) {
        fail(&format!(
            "building the eBPF probe in {} failed: {err:#}\n(if the toolchain is broken, {SETUP_HINT})",
            ebpf_dir.display()
        ));
    }
    println!("cargo:rustc-cfg=sentry_ebpf");
}

/// Stops the build with a message cargo shows in full.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    println!("cargo:warning={message}");
    std::process::exit(1);
}

/// Checks for what aya-build needs: rustup with a nightly toolchain that has `rust-src`, and
/// `bpf-linker`. Returns what is missing.
fn ebpf_toolchain_present() -> Result<(), String> {
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .map_err(|err| format!("rustup is not available ({err})"))?;
    if !sysroot.status.success() {
        return Err("the nightly toolchain is not installed".to_string());
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    let rust_src = sysroot.join("lib/rustlib/src/rust/library/core");
    if !rust_src.is_dir() {
        return Err("nightly has no rust-src component".to_string());
    }
    if find_in_path("bpf-linker").is_none() {
        return Err("bpf-linker is not on PATH".to_string());
    }
    Ok(())
}

/// Finds `program` on PATH (cargo puts `~/.cargo/bin` there when run through rustup).
fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Writes `$OUT_DIR/dashboard_assets.rs`: one `Asset` (URL path, content type, bytes through
/// `include_bytes!`) per file of `dashboard/dist`, and reruns when anything there changes.
fn embed_dashboard() {
    let Some(manifest_dir) = env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from) else {
        fail("CARGO_MANIFEST_DIR is not set; build sentry through cargo");
    };
    let Some(out_dir) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        fail("OUT_DIR is not set; build sentry through cargo");
    };
    let dist = manifest_dir.join("../dashboard/dist");
    // A directory is scanned whole; a missing one reruns the script until it appears.
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files = Vec::new();
    if dist.join("index.html").is_file() {
        collect_files(&dist, &mut files);
    }
    files.sort();
    let mut table = String::from(
        "/// The built dashboard, from `dashboard/dist`.\npub static ASSETS: &[Asset] = &[\n",
    );
    for file in &files {
        let Ok(rel) = file.strip_prefix(&dist) else {
            continue;
        };
        let Some(rel) = rel.to_str() else {
            fail(&format!("{} is not valid UTF-8", file.display()));
        };
        let Some(abs) = file
            .canonicalize()
            .ok()
            .and_then(|p| p.to_str().map(String::from))
        else {
            fail(&format!("cannot resolve {}", file.display()));
        };
        let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
        table.push_str(&format!(
            "    Asset {{ path: {:?}, content_type: {:?}, bytes: include_bytes!({:?}) }},\n",
            format!("/{}", rel.replace('\\', "/")),
            content_type(ext),
            abs
        ));
    }
    table.push_str("];\n");
    let target = out_dir.join("dashboard_assets.rs");
    if let Err(err) = std::fs::write(&target, table) {
        fail(&format!("cannot write {}: {err}", target.display()));
    }
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => fail(&format!("cannot read {}: {err}", dir.display())),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, files);
        } else if path.is_file() {
            files.push(path);
        }
    }
}

/// The `Content-Type` of a built asset, by extension.
fn content_type(ext: &str) -> &'static str {
    match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "webmanifest" => "application/manifest+json",
        _ => "application/octet-stream",
    }
}
