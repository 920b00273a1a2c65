//! The corpus manifest (`fixtures/corpus/manifest.toml`): which log is runaway or healthy, in
//! which set, and for runaways where the loop begins and how long its cycle is.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// Label of a corpus file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Runaway,
    Healthy,
}

/// The set tuned on; every other set (`validation`, `holdout`, ...) is reported on its own row.
pub const MAIN_SET: &str = "main";

/// The set names of `entries`: `main` first, then the others in order of first appearance, so
/// that a new set added to the manifest gets its own report row without touching the bench.
pub fn set_names(entries: &[Entry]) -> Vec<&str> {
    let mut names = vec![MAIN_SET];
    for e in entries {
        if !names.contains(&e.set.as_str()) {
            names.push(&e.set);
        }
    }
    names
}

/// One labelled file.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub path: String,
    /// Which part of the corpus it belongs to: `main` (tuned on) or a set never tuned on.
    pub set: String,
    pub label: Label,
    pub description: String,
    pub kind: Option<String>,
    pub loop_start: Option<u64>,
    pub period: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    file: Vec<Entry>,
}

/// The corpus: its directory and its entries.
#[derive(Debug)]
pub struct Corpus {
    pub dir: PathBuf,
    pub entries: Vec<Entry>,
}

impl Corpus {
    /// Reads and validates `dir/manifest.toml`: every file exists, runaways carry a kind, a
    /// loop start and a period, healthy files carry none of them.
    pub fn load(dir: &Path) -> Result<Corpus> {
        let path = dir.join("manifest.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the corpus manifest {}", path.display()))?;
        let m: Manifest = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid manifest", path.display()))?;
        for e in &m.file {
            if e.set.is_empty() || !e.set.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                bail!(
                    "{}: {} has set {:?}; a set is a non-empty word such as \"main\"",
                    path.display(),
                    e.path,
                    e.set
                );
            }
            if !dir.join(&e.path).is_file() {
                bail!("{}: lists {}, which does not exist", path.display(), e.path);
            }
            match (e.label, e.kind.as_deref(), e.loop_start, e.period) {
                (Label::Runaway, Some(_), Some(s), Some(p)) if s >= 1 && p >= 1 => {}
                (Label::Runaway, ..) => bail!(
                    "{}: runaway {} needs kind, loop_start >= 1 and period >= 1",
                    path.display(),
                    e.path
                ),
                (Label::Healthy, None, None, None) => {}
                (Label::Healthy, ..) => bail!(
                    "{}: healthy {} must not have kind/loop_start/period",
                    path.display(),
                    e.path
                ),
            }
        }
        if m.file.is_empty() {
            bail!("{} lists no files", path.display());
        }
        Ok(Corpus {
            dir: dir.to_path_buf(),
            entries: m.file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/corpus")
    }

    #[test]
    fn committed_manifest_is_valid_and_large_enough() {
        let c = Corpus::load(&corpus_dir()).expect("the committed manifest must load");
        let count = |set: &str, label| {
            c.entries
                .iter()
                .filter(|e| e.set == set && e.label == label)
                .count()
        };
        assert!(count("main", Label::Runaway) >= 30, "too few main runaways");
        assert!(
            count("main", Label::Healthy) >= 30,
            "too few main healthy logs"
        );
        assert!(
            count("validation", Label::Runaway) >= 4,
            "too few validation runaways"
        );
        assert!(
            count("validation", Label::Healthy) >= 4,
            "too few validation healthy logs"
        );
        assert!(
            count("holdout", Label::Runaway) >= 6,
            "too few holdout runaways"
        );
        assert!(
            count("holdout", Label::Healthy) >= 6,
            "too few holdout healthy logs"
        );
        assert!(
            count("holdout3", Label::Runaway) >= 6,
            "too few holdout3 runaways"
        );
        assert!(
            count("holdout3", Label::Healthy) >= 6,
            "too few holdout3 healthy logs"
        );
        assert!(
            count("holdout4", Label::Runaway) >= 10,
            "too few holdout4 runaways"
        );
        assert!(
            count("holdout4", Label::Healthy) >= 10,
            "too few holdout4 healthy logs"
        );
        assert_eq!(
            set_names(&c.entries),
            ["main", "validation", "holdout", "holdout3", "holdout4"]
        );
    }

    fn entry(path: &str, set: &str) -> Entry {
        Entry {
            path: path.into(),
            set: set.into(),
            label: Label::Healthy,
            description: String::new(),
            kind: None,
            loop_start: None,
            period: None,
        }
    }

    #[test]
    fn every_set_name_gets_a_row_main_first() {
        let es = [
            entry("a", "holdout"),
            entry("b", "main"),
            entry("c", "validation"),
            entry("d", "holdout"),
            entry("e", "extra_2026"),
        ];
        assert_eq!(
            set_names(&es),
            ["main", "holdout", "validation", "extra_2026"]
        );
        assert_eq!(set_names(&es[..1]), ["main", "holdout"]);
    }

    #[test]
    fn a_set_that_is_not_a_word_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("healthy")).expect("mkdir");
        std::fs::write(dir.path().join("healthy/a.log"), "x\n").expect("write");
        std::fs::write(
            dir.path().join("manifest.toml"),
            "[[file]]\npath = \"healthy/a.log\"\nset = \"\"\nlabel = \"healthy\"\n\
             description = \"d\"\n",
        )
        .expect("write");
        let err = Corpus::load(dir.path()).expect_err("an empty set name must be an error");
        assert!(
            format!("{err:#}").contains("a set is a non-empty word"),
            "{err:#}"
        );
    }

    #[test]
    fn every_loop_start_lies_inside_its_file() {
        let c = Corpus::load(&corpus_dir()).expect("the committed manifest must load");
        for e in c.entries.iter().filter(|e| e.label == Label::Runaway) {
            let text = std::fs::read(c.dir.join(&e.path)).expect("listed file is readable");
            let lines = text.iter().filter(|&&b| b == b'\n').count() as u64;
            let (s, p) = (e.loop_start.unwrap_or(0), e.period.unwrap_or(0));
            assert!(
                s + 8 * p <= lines + 1,
                "{}: loop_start {s} + 8 cycles of {p} lines runs past its {lines} lines",
                e.path
            );
        }
    }

    #[test]
    fn a_runaway_without_period_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("runaway")).expect("mkdir");
        std::fs::write(dir.path().join("runaway/a.log"), "x\n").expect("write");
        std::fs::write(
            dir.path().join("manifest.toml"),
            "[[file]]\npath = \"runaway/a.log\"\nset = \"main\"\nlabel = \"runaway\"\n\
             description = \"d\"\nkind = \"output_loop\"\nloop_start = 1\n",
        )
        .expect("write");
        let err = Corpus::load(dir.path()).expect_err("missing period must be an error");
        assert!(
            format!("{err:#}").contains("needs kind, loop_start >= 1 and period >= 1"),
            "{err:#}"
        );
    }
}
