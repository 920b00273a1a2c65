//! What `sentry watch` is pointed at: a cgroup v2 path (absolute, or relative to the cgroup2
//! mount, on pure v2 and hybrid hosts), the cgroup of a pid, or a systemd unit's
//! `ControlGroup`. Resolving only reads; sentry never writes to a cgroup it did not create.

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use crate::capture::cgroup;

/// A cgroup to watch as one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupTarget {
    /// Its directory under the cgroup2 mount.
    pub path: PathBuf,
    /// How the user named it (`--cgroup X`, `--pid N`, `--unit U`), for labels and messages.
    pub name: String,
}

/// Why a target cannot be watched; each says what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// No cgroup2 hierarchy.
    #[error("no cgroup v2 hierarchy is mounted (looked for cgroup2 in /proc/self/mountinfo); `sentry watch` needs one (pure v2, or hybrid with /sys/fs/cgroup/unified)")]
    NoCgroup2,
    /// The path does not name a cgroup.
    #[error("--cgroup {given}: {path} is not a cgroup v2 directory (no cgroup.procs there); give a path under {root} or relative to it, e.g. system.slice/runner.service")]
    NotACgroup {
        /// As given.
        given: String,
        /// Where it led.
        path: String,
        /// The cgroup2 mount.
        root: String,
    },
    /// The path leaves the cgroup2 hierarchy.
    #[error("--cgroup {given}: the path leaves the cgroup v2 hierarchy at {root}")]
    Outside {
        /// As given.
        given: String,
        /// The cgroup2 mount.
        root: String,
    },
    /// The pid does not exist or is in no v2 cgroup.
    #[error("--pid {pid}: {why}")]
    Pid {
        /// The pid.
        pid: i32,
        /// Why.
        why: String,
    },
    /// The target is the root cgroup: the whole host.
    #[error("{given}: that is the root cgroup, i.e. every process on this host; watch the cgroup of the work itself (e.g. a runner's service or scope)")]
    WholeHost {
        /// As given.
        given: String,
    },
    /// sentry itself runs in the target cgroup.
    #[error("{given}: sentry itself runs in {path}, so it would watch (and could stop) itself; start sentry in another cgroup (e.g. `systemd-run --scope`, or the systemd unit in deploy/)")]
    Own {
        /// As given.
        given: String,
        /// The cgroup.
        path: String,
    },
    /// The unit cannot be resolved.
    #[error("--unit {unit}: {why}")]
    Unit {
        /// The unit.
        unit: String,
        /// Why.
        why: String,
    },
}

/// The cgroup2 mount, or why there is none.
pub fn cgroup2_root() -> Result<PathBuf, TargetError> {
    cgroup::cgroup2_root().map_err(|_| TargetError::NoCgroup2)
}

/// Resolves `--cgroup PATH` against the cgroup2 mount `root`.
pub fn resolve_cgroup(root: &Path, given: &str) -> Result<CgroupTarget, TargetError> {
    let as_path = Path::new(given);
    let rel = match as_path.strip_prefix(root) {
        Ok(rel) => rel.to_path_buf(),
        Err(_) if as_path.is_absolute() && as_path.starts_with("/sys/fs/cgroup") => {
            // An absolute path into another hierarchy (a v1 controller on a hybrid host).
            return Err(TargetError::NotACgroup {
                given: given.to_string(),
                path: given.to_string(),
                root: root.display().to_string(),
            });
        }
        // Absolute paths that are not under the mount are read as cgroup paths
        // ("/system.slice/x" as in /proc/PID/cgroup); relative ones as relative to the mount.
        Err(_) => as_path
            .components()
            .filter(|c| !matches!(c, Component::RootDir))
            .collect(),
    };
    if rel.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(TargetError::Outside {
            given: given.to_string(),
            root: root.display().to_string(),
        });
    }
    let path = root.join(&rel);
    if !path.join("cgroup.procs").is_file() {
        return Err(TargetError::NotACgroup {
            given: given.to_string(),
            path: path.display().to_string(),
            root: root.display().to_string(),
        });
    }
    Ok(CgroupTarget {
        path,
        name: given.to_string(),
    })
}

/// Resolves `--pid PID` to the cgroup the process is in.
pub fn resolve_pid(root: &Path, pid: i32) -> Result<CgroupTarget, TargetError> {
    if pid <= 0 {
        return Err(TargetError::Pid {
            pid,
            why: "give a process id greater than 0".into(),
        });
    }
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(TargetError::Pid {
            pid,
            why: "no such process".into(),
        });
    }
    let path = cgroup::cgroup_of_pid(root, pid).ok_or_else(|| TargetError::Pid {
        pid,
        why: "its cgroup v2 membership cannot be read from /proc/PID/cgroup".into(),
    })?;
    Ok(CgroupTarget {
        path,
        name: format!("pid {pid}"),
    })
}

/// Resolves `--unit NAME` through systemd (`systemctl show -p ControlGroup`).
pub fn resolve_unit(root: &Path, unit: &str) -> Result<CgroupTarget, TargetError> {
    let err = |why: String| TargetError::Unit {
        unit: unit.to_string(),
        why,
    };
    if !Path::new("/run/systemd/system").is_dir() {
        return Err(err(
            "systemd is not running on this host; point at the unit's cgroup with --cgroup instead"
                .into(),
        ));
    }
    let out = Command::new("systemctl")
        .args(["show", "--property=ControlGroup", "--value", "--", unit])
        .output()
        .map_err(|e| err(format!("cannot run systemctl: {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "systemctl show failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let cgroup_path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if cgroup_path.is_empty() {
        return Err(err(
            "the unit has no control group (is it loaded and active? see `systemctl status`)"
                .into(),
        ));
    }
    let mut target = resolve_cgroup(root, &cgroup_path).map_err(|e| err(e.to_string()))?;
    target.name = unit.to_string();
    Ok(target)
}

/// Refuses targets that would take in the whole host or sentry itself.
pub fn check_scope(root: &Path, target: &CgroupTarget) -> Result<(), TargetError> {
    if target.path == root {
        return Err(TargetError::WholeHost {
            given: target.name.clone(),
        });
    }
    if let Some(own) = cgroup::cgroup_of_pid(root, std::process::id() as i32) {
        if own.starts_with(&target.path) {
            return Err(TargetError::Own {
                given: target.name.clone(),
                path: own.display().to_string(),
            });
        }
    }
    Ok(())
}

/// Whether `path` still exists as a cgroup.
pub fn exists(path: &Path) -> bool {
    fs::metadata(path.join("cgroup.procs")).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_paths_resolve_absolute_relative_and_as_proc_shows_them() {
        let root = tempfile::tempdir().unwrap();
        let cg = root.path().join("ci.slice/job-1");
        fs::create_dir_all(&cg).unwrap();
        fs::write(cg.join("cgroup.procs"), "").unwrap();
        let want = Ok(cg.clone());
        for given in [
            cg.display().to_string(),
            "ci.slice/job-1".to_string(),
            "/ci.slice/job-1".to_string(),
        ] {
            assert_eq!(
                resolve_cgroup(root.path(), &given).map(|t| t.path),
                want,
                "{given}"
            );
        }
        assert!(matches!(
            resolve_cgroup(root.path(), "ci.slice/nope"),
            Err(TargetError::NotACgroup { .. })
        ));
        assert!(matches!(
            resolve_cgroup(root.path(), "ci.slice/../../etc"),
            Err(TargetError::Outside { .. })
        ));
        let msg = resolve_cgroup(root.path(), "nope").unwrap_err().to_string();
        assert!(msg.contains("relative to it"), "{msg}");
    }

    #[test]
    fn a_pid_resolves_to_its_own_cgroup() {
        let Ok(root) = cgroup::cgroup2_root() else {
            return; // no cgroup2 here: nothing to resolve against
        };
        let me = std::process::id() as i32;
        let target = resolve_pid(&root, me).expect("this process has a cgroup");
        assert!(target.path.starts_with(&root));
        assert!(target.path.join("cgroup.procs").is_file());
        assert!(matches!(
            resolve_pid(&root, 0),
            Err(TargetError::Pid { .. })
        ));
        assert!(matches!(
            resolve_pid(&root, i32::MAX),
            Err(TargetError::Pid { .. })
        ));
    }
}
