//! `cargo xtask setup`: installs what building the eBPF probe needs (nightly `rust-src` and a
//! `bpf-linker` built against the nightly toolchain's own libLLVM), each only when missing, and
//! says what it found and did. Every xtask command that builds the probe calls this first.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{cmd_output, run};

/// The nightly toolchain the eBPF crate is built with.
const NIGHTLY: &str = "nightly";

/// Ensures nightly, its `rust-src` and `bpf-linker` are present; installs what is missing.
pub fn setup() -> Result<()> {
    ensure_nightly()?;
    ensure_rust_src()?;
    ensure_bpf_linker()?;
    eprintln!("setup: the eBPF toolchain is ready");
    Ok(())
}

fn ensure_nightly() -> Result<()> {
    let list = cmd_output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is required to build the eBPF probe; install it from the Rust website's instructions")?;
    if list.lines().any(|l| l.starts_with(NIGHTLY)) {
        eprintln!("setup: nightly toolchain present");
        return Ok(());
    }
    eprintln!("setup: installing the nightly toolchain (minimal profile)");
    run(Command::new("rustup").args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]))
}

fn ensure_rust_src() -> Result<()> {
    let installed = cmd_output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]))?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("setup: nightly rust-src present");
        return Ok(());
    }
    eprintln!("setup: adding rust-src to the nightly toolchain");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
}

/// bpf-linker must link against the same LLVM as nightly rustc; it finds nightly's libLLVM only
/// when started under rustup, so that is how it is probed.
fn ensure_bpf_linker() -> Result<()> {
    let probe = Command::new("rustup")
        .args(["run", NIGHTLY, "bpf-linker", "--version"])
        .output();
    if let Ok(out) = &probe {
        if out.status.success() {
            let version = String::from_utf8_lossy(&out.stdout);
            eprintln!("setup: {} present", version.trim());
            return Ok(());
        }
    }
    let sysroot = PathBuf::from(
        cmd_output(Command::new("rustc").args([&format!("+{NIGHTLY}"), "--print", "sysroot"]))?
            .trim(),
    );
    let lib = find_libllvm(&sysroot.join("lib"))?;
    let major = llvm_major(&lib)?;
    let prefix = workspace_root()
        .join("target")
        .join("xtask")
        .join("llvm-prefix");
    std::fs::create_dir_all(prefix.join("lib"))
        .with_context(|| format!("creating {}", prefix.display()))?;
    let link = prefix.join("lib").join("libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&lib, &link)
        .with_context(|| format!("linking {} to {}", link.display(), lib.display()))?;
    eprintln!(
        "setup: building bpf-linker against nightly's LLVM {major} ({}); this takes about a minute",
        lib.display()
    );
    run(Command::new("cargo")
        .args([
            &format!("+{NIGHTLY}"),
            "install",
            "bpf-linker",
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .env("LLVM_PREFIX", &prefix))
    .context("building bpf-linker failed; see the cargo output above")?;
    let out = Command::new("rustup")
        .args(["run", NIGHTLY, "bpf-linker", "--version"])
        .output()
        .context("running the freshly installed bpf-linker")?;
    if !out.status.success() {
        bail!(
            "bpf-linker was installed but does not start: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Finds the shared library `libLLVM.so.<major>…` (or `libLLVM-<major>…so`) in the nightly
/// sysroot. Rust ships `libLLVM-22-rust-….so` as a 43-byte linker script (`INPUT(libLLVM.so.22…)`)
/// beside the real library; lld cannot follow that script through a symlink in another
/// directory, so the largest candidate (the real ELF library) is taken.
fn find_libllvm(dir: &Path) -> Result<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("libLLVM.so.")
            || (name.starts_with("libLLVM-") && name.ends_with(".so"))
        {
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            found.push((size, entry.path()));
        }
    }
    found.sort();
    found.into_iter().next_back().map(|(_, path)| path).with_context(|| {
        format!(
            "no libLLVM shared library in {}; reinstall the nightly toolchain (`rustup toolchain install nightly`)",
            dir.display()
        )
    })
}

/// `libLLVM.so.22.1-rust-…` or `libLLVM-22-rust-….so` → 22.
fn llvm_major(lib: &Path) -> Result<u32> {
    let name = lib
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rest = name
        .strip_prefix("libLLVM.so.")
        .or_else(|| name.strip_prefix("libLLVM-"))
        .unwrap_or("");
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits
        .parse()
        .with_context(|| format!("cannot read the LLVM version from {name}"))
}

/// The repository root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_llvm_major_from_both_library_spellings() {
        assert_eq!(
            llvm_major(Path::new("/x/libLLVM.so.22.1-rust-1.97.0-nightly")).unwrap(),
            22
        );
        assert_eq!(
            llvm_major(Path::new("/x/libLLVM-21-rust-1.90.0-nightly.so")).unwrap(),
            21
        );
        assert!(llvm_major(Path::new("/x/libfoo.so")).is_err());
    }
}
