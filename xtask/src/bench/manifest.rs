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

/// Which part of the corpus a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Set {
    /// Tuned on.
    Main,
    /// Never tuned on.
    Validation,
}

/// One labelled file.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub path: String,
    pub set: Set,
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
        let count = |set, label| {
            c.entries
                .iter()
                .filter(|e| e.set == set && e.label == label)
                .count()
        };
        assert!(
            count(Set::Main, Label::Runaway) >= 30,
            "too few main runaways"
        );
        assert!(
            count(Set::Main, Label::Healthy) >= 30,
            "too few main healthy logs"
        );
        assert!(
            count(Set::Validation, Label::Runaway) >= 4,
            "too few validation runaways"
        );
        assert!(
            count(Set::Validation, Label::Healthy) >= 4,
            "too few validation healthy logs"
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
