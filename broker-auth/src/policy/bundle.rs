//! Policy bundles and the deploy gate.
//!
//! A [`Bundle`] is what a person edits: named `.rego` files (tests included) and an optional
//! `data.json`. Every new version of the serving policy, whatever its source (the directory, the
//! API, a rollback), passes [`gate`]: parse, compile both entry points, the RVM/interpreter
//! cross-check, and every `test_*` rule. A refusal says where ([`Problem`]: file, line, column)
//! and which tests failed, so an editor can mark the line.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use super::{PolicySet, PolicySource, TestOutcome, TestReport};

/// The name of the optional data document of a bundle.
pub const DATA_FILE: &str = "data.json";
/// Most files in one bundle.
pub const MAX_FILES: usize = 64;
/// Largest file, bytes.
pub const MAX_FILE_BYTES: usize = 256 * 1024;
/// Largest bundle (all files together), bytes.
pub const MAX_BUNDLE_BYTES: usize = 1024 * 1024;
/// Longest file name.
pub const MAX_NAME_LEN: usize = 128;

/// Why a set of files is not a bundle at all (before any Rego is looked at).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// No files, or more than [`MAX_FILES`].
    #[error("a bundle has 1 to {MAX_FILES} files, this one has {0}")]
    FileCount(usize),
    /// A name that is not `NAME.rego` or `data.json` (no directories, no hidden files).
    #[error(
        "file name {0:?}: use letters, digits, `_`, `-` and `.`, ending in .rego (or data.json)"
    )]
    BadName(String),
    /// One file over [`MAX_FILE_BYTES`].
    #[error("{name}: {bytes} bytes, the most is {MAX_FILE_BYTES}")]
    FileTooLarge {
        /// The file.
        name: String,
        /// Its size.
        bytes: usize,
    },
    /// The bundle over [`MAX_BUNDLE_BYTES`].
    #[error("the bundle has {0} bytes, the most is {MAX_BUNDLE_BYTES}")]
    TooLarge(usize),
    /// `data.json` is not a JSON object.
    #[error("data.json: {0}")]
    BadData(String),
}

/// A policy as a person edits it: file name → text. Validated on construction (names, sizes,
/// `data.json`), immutable after.
#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    files: BTreeMap<String, String>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn is_bundle_name(name: &str) -> bool {
    let stem_ok = |stem: &str| {
        !stem.is_empty()
            && !stem.starts_with('.')
            && stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    };
    name.len() <= MAX_NAME_LEN
        && (name == DATA_FILE || name.strip_suffix(".rego").is_some_and(stem_ok))
}

impl Bundle {
    /// A bundle of `files`, or why these files cannot be one.
    pub fn new(files: BTreeMap<String, String>) -> Result<Bundle, BundleError> {
        if files.is_empty() || files.len() > MAX_FILES {
            return Err(BundleError::FileCount(files.len()));
        }
        let mut total = 0usize;
        for (name, text) in &files {
            if !is_bundle_name(name) {
                return Err(BundleError::BadName(name.clone()));
            }
            if text.len() > MAX_FILE_BYTES {
                return Err(BundleError::FileTooLarge {
                    name: name.clone(),
                    bytes: text.len(),
                });
            }
            total += text.len();
        }
        if total > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge(total));
        }
        if let Some(data) = files.get(DATA_FILE) {
            match serde_json::from_str::<Json>(data) {
                Ok(Json::Object(_)) => {}
                Ok(_) => return Err(BundleError::BadData("must be a JSON object".into())),
                Err(e) => return Err(BundleError::BadData(e.to_string())),
            }
        }
        Ok(Bundle { files })
    }

    /// The files, by name.
    pub fn files(&self) -> &BTreeMap<String, String> {
        &self.files
    }

    /// SHA-256 (hex) of the files sorted by name: name, NUL, bytes, NUL, … — the same bundle
    /// has the same hash wherever it was made.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for (name, text) in &self.files {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(text.as_bytes());
            h.update([0]);
        }
        data_encoding::HEXLOWER.encode(&h.finalize())
    }

    /// The Rego files as policy sources (named by file name).
    pub fn sources(&self) -> Vec<PolicySource> {
        self.files
            .iter()
            .filter(|(name, _)| name.ends_with(".rego"))
            .map(|(name, text)| PolicySource {
                path: name.clone(),
                text: text.clone(),
            })
            .collect()
    }

    /// The parsed `data.json`, if the bundle has one (validated in [`Bundle::new`]).
    pub fn data(&self) -> Option<Json> {
        self.files
            .get(DATA_FILE)
            .and_then(|d| serde_json::from_str(d).ok())
    }
}

/// One thing wrong with a bundle, where a person can find it. `line` and `col` are 1-based;
/// 0 when the problem has no place (a missing entry point).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// File name, `None` when the problem is not in one file.
    pub file: Option<String>,
    /// Line.
    pub line: u32,
    /// Column.
    pub col: u32,
    /// What is wrong.
    pub message: String,
}

/// The problems named in a policy error's text: every `--> file:line:col` location regorus
/// reports, with the `error:` line after it; the whole text, unplaced, when there is none.
pub fn problems_in(text: &str) -> Vec<Problem> {
    let mut out: Vec<Problem> = super::reported(text)
        .into_iter()
        .filter_map(|(loc, message)| {
            let mut parts = loc.rsplitn(3, ':');
            let (col, line, file) = (parts.next()?, parts.next()?, parts.next()?);
            Some(Problem {
                file: Some(file.to_owned()),
                line: line.parse().ok()?,
                col: col.parse().ok()?,
                message: message.unwrap_or("invalid policy").to_owned(),
            })
        })
        .collect();
    if out.is_empty() {
        let first = text.lines().next().unwrap_or("invalid policy");
        out.push(Problem {
            file: None,
            line: 0,
            col: 0,
            message: first.to_owned(),
        });
    }
    out
}

/// A bundle the gate accepted: the compiled set, ready to serve, and its test report.
#[derive(Debug)]
pub struct Gated {
    /// The compiled, validated set.
    pub set: PolicySet,
    /// Every `test_*` rule's outcome (all passed).
    pub tests: TestReport,
}

/// Why the gate refused a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// One line for a log or an error envelope.
    pub message: String,
    /// Where (for compile errors, the error's location; for failed tests, the test rule's line).
    pub problems: Vec<Problem>,
    /// The tests that ran (empty when the policy did not compile).
    pub tests: Vec<TestOutcome>,
}

/// The deploy gate: compile `bundle` (parse, both entry points, a first evaluation, the
/// RVM/interpreter cross-check) and run every `test_*` rule. Accepted only when all of it passes.
pub fn gate(bundle: &Bundle) -> Result<Gated, Refusal> {
    let set = PolicySet::from_bundle(bundle).map_err(|e| {
        let text = e.to_string();
        let problems = problems_in(&text);
        Refusal {
            message: text.lines().next().unwrap_or("invalid policy").to_owned(),
            problems,
            tests: vec![],
        }
    })?;
    let tests = set.run_tests().map_err(|e| {
        let text = e.to_string();
        Refusal {
            message: format!("the tests do not compile: {}", first_line(&text)),
            problems: problems_in(&text),
            tests: vec![],
        }
    })?;
    let failed: Vec<&TestOutcome> = tests.outcomes.iter().filter(|o| !o.passed).collect();
    if failed.is_empty() {
        return Ok(Gated { set, tests });
    }
    let problems = failed.iter().map(|o| test_problem(o)).collect();
    let names: Vec<&str> = failed.iter().map(|o| o.rule.as_str()).collect();
    Err(Refusal {
        message: format!("{} test(s) failed: {}", failed.len(), names.join(", ")),
        problems,
        tests: tests.outcomes,
    })
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// A failed test as a problem at its rule's line (`location` is `file:line`).
fn test_problem(o: &TestOutcome) -> Problem {
    let (file, line) = o
        .location
        .rsplit_once(':')
        .and_then(|(f, l)| Some((f.to_owned(), l.parse().ok()?)))
        .unwrap_or_else(|| (o.location.clone(), 0));
    Problem {
        file: Some(file),
        line,
        col: 1,
        message: format!(
            "test {} failed: {}",
            o.rule,
            o.error.as_deref().unwrap_or("false")
        ),
    }
}
