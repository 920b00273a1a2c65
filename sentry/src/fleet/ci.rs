//! Which CI job a process belongs to, read from its environment: GitHub Actions
//! (`RUNNER_TRACKING_ID`), GitLab Runner (`CI_JOB_ID`), Buildkite (`BUILDKITE_JOB_ID`) and
//! Jenkins (`BUILD_TAG`), with the labels platform teams group by (repository, workflow, job
//! name, runner). The same reading serves `sentry watch --discover ci` (another process's
//! `/proc/PID/environ`) and `sentry run` inside a CI job (its own environment).

use std::collections::BTreeMap;

/// One CI job as its environment describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiJob {
    /// `github`, `gitlab`, `buildkite` or `jenkins`.
    pub ci: &'static str,
    /// The job's identity on this host: the variable that marks its processes.
    pub id: String,
    /// `ci`, `repository`, `workflow`, `job`, `runner` (those the platform sets).
    pub labels: BTreeMap<String, String>,
}

impl CiJob {
    /// The key grouping this job's runs over time (its repository, workflow and job name; not
    /// its per-run id), for baselines.
    pub fn job_key(&self) -> String {
        let get = |k: &str| self.labels.get(k).map_or("", String::as_str);
        format!(
            "{}:{}:{}:{}",
            self.ci,
            get("repository"),
            get("workflow"),
            get("job")
        )
    }
}

/// How one platform marks a job and names its labels: `(label, variables tried in order)`.
struct Platform {
    ci: &'static str,
    marker: &'static str,
    labels: &'static [(&'static str, &'static [&'static str])],
}

const PLATFORMS: &[Platform] = &[
    Platform {
        ci: "github",
        marker: "RUNNER_TRACKING_ID",
        labels: &[
            ("repository", &["GITHUB_REPOSITORY"]),
            ("workflow", &["GITHUB_WORKFLOW"]),
            ("job", &["GITHUB_JOB"]),
            ("runner", &["RUNNER_NAME"]),
        ],
    },
    Platform {
        ci: "gitlab",
        marker: "CI_JOB_ID",
        labels: &[
            ("repository", &["CI_PROJECT_PATH"]),
            ("workflow", &["CI_PIPELINE_NAME", "CI_PIPELINE_SOURCE"]),
            ("job", &["CI_JOB_NAME"]),
            ("runner", &["CI_RUNNER_DESCRIPTION", "CI_RUNNER_ID"]),
        ],
    },
    Platform {
        ci: "buildkite",
        marker: "BUILDKITE_JOB_ID",
        labels: &[
            ("repository", &["BUILDKITE_REPO"]),
            ("workflow", &["BUILDKITE_PIPELINE_SLUG"]),
            ("job", &["BUILDKITE_LABEL", "BUILDKITE_STEP_KEY"]),
            ("runner", &["BUILDKITE_AGENT_NAME"]),
        ],
    },
    Platform {
        ci: "jenkins",
        marker: "BUILD_TAG",
        labels: &[
            ("repository", &["GIT_URL"]),
            ("workflow", &["JOB_NAME"]),
            ("job", &["STAGE_NAME", "JOB_BASE_NAME"]),
            ("runner", &["NODE_NAME"]),
        ],
    },
];

/// Longest label value kept: labels end up in metric series and alert routes.
const MAX_LABEL_LEN: usize = 200;

/// The CI job `lookup` describes (`lookup("NAME")` is the variable's value), if any. An
/// empty marker does not count: a shell that exported `CI_JOB_ID=` is not a job.
pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Option<CiJob> {
    PLATFORMS.iter().find_map(|p| {
        let id = lookup(p.marker).filter(|v| !v.trim().is_empty())?;
        let mut labels = BTreeMap::new();
        labels.insert("ci".to_string(), p.ci.to_string());
        for (label, vars) in p.labels {
            if let Some(value) = vars
                .iter()
                .find_map(|v| lookup(v).filter(|s| !s.trim().is_empty()))
            {
                labels.insert((*label).to_string(), clip(&value));
            }
        }
        Some(CiJob {
            ci: p.ci,
            id: clip(&id),
            labels,
        })
    })
}

/// The CI job described by a `/proc/PID/environ` image (NUL-separated `KEY=VALUE`).
pub fn from_environ(environ: &[u8]) -> Option<CiJob> {
    // Cheap reject first: most processes on a host are not CI jobs.
    if !PLATFORMS
        .iter()
        .any(|p| contains(environ, p.marker.as_bytes()))
    {
        return None;
    }
    let vars: BTreeMap<&[u8], &[u8]> = environ
        .split(|&b| b == 0)
        .filter_map(|entry| {
            let eq = entry.iter().position(|&b| b == b'=')?;
            Some((&entry[..eq], &entry[eq + 1..]))
        })
        .collect();
    from_env(|name| {
        vars.get(name.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// The CI job this process runs in, from its own environment.
pub fn from_own_env() -> Option<CiJob> {
    from_env(|name| std::env::var(name).ok())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn clip(value: &str) -> String {
    let value = value.trim();
    if value.len() <= MAX_LABEL_LEN {
        return value.to_string();
    }
    let mut end = MAX_LABEL_LEN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in pairs {
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        out
    }

    #[test]
    fn reads_each_platform_and_its_labels() {
        let gh = from_environ(&env(&[
            ("PATH", "/usr/bin"),
            ("RUNNER_TRACKING_ID", "github_0b1e"),
            ("GITHUB_REPOSITORY", "acme/api"),
            ("GITHUB_WORKFLOW", "CI"),
            ("GITHUB_JOB", "test"),
            ("RUNNER_NAME", "runner-7"),
        ]))
        .expect("a GitHub job");
        assert_eq!(gh.ci, "github");
        assert_eq!(gh.id, "github_0b1e");
        assert_eq!(gh.labels["repository"], "acme/api");
        assert_eq!(gh.labels["workflow"], "CI");
        assert_eq!(gh.labels["job"], "test");
        assert_eq!(gh.labels["runner"], "runner-7");
        assert_eq!(gh.labels["ci"], "github");
        assert_eq!(gh.job_key(), "github:acme/api:CI:test");

        let gl = from_environ(&env(&[
            ("CI_JOB_ID", "991"),
            ("CI_PROJECT_PATH", "g/p"),
            ("CI_JOB_NAME", "build"),
        ]))
        .expect("a GitLab job");
        assert_eq!((gl.ci, gl.id.as_str()), ("gitlab", "991"));
        assert!(!gl.labels.contains_key("runner"), "unset labels are absent");

        let bk = from_environ(&env(&[
            ("BUILDKITE_JOB_ID", "0190-ab"),
            ("BUILDKITE_LABEL", ":rust: test"),
        ]))
        .expect("a Buildkite job");
        assert_eq!(bk.labels["job"], ":rust: test");

        let jk = from_environ(&env(&[
            ("BUILD_TAG", "jenkins-app-42"),
            ("JOB_NAME", "app"),
        ]))
        .expect("a Jenkins job");
        assert_eq!((jk.ci, jk.labels["workflow"].as_str()), ("jenkins", "app"));
    }

    #[test]
    fn ordinary_processes_and_empty_markers_are_not_jobs() {
        assert_eq!(
            from_environ(&env(&[("PATH", "/bin"), ("HOME", "/root")])),
            None
        );
        assert_eq!(from_environ(&env(&[("CI_JOB_ID", "  ")])), None);
        // A variable whose name merely contains a marker is not the marker.
        assert_eq!(from_environ(&env(&[("XRUNNER_TRACKING_ID", "1")])), None);
        assert_eq!(from_environ(b""), None);
        assert_eq!(from_environ(b"\0\0=\0RUNNER_TRACKING_ID"), None);
    }

    #[test]
    fn long_values_are_clipped_on_a_character_boundary() {
        let long = "é".repeat(300);
        let job = from_environ(&env(&[("CI_JOB_ID", "1"), ("CI_JOB_NAME", &long)])).unwrap();
        assert!(job.labels["job"].len() <= MAX_LABEL_LEN);
        assert!(job.labels["job"].chars().all(|c| c == 'é'));
    }
}
