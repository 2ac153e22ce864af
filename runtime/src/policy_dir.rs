//! Policies on disk: read a directory of `*.rego` files into sources, and follow it so an edit
//! is validated and swapped in whole (or refused, and the old set keeps serving).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use std::collections::BTreeMap;

use broker_auth::policy::bundle::{Bundle, BundleError, DATA_FILE};
use broker_auth::policy::{PolicySet, PolicySource};

use crate::live::LiveAuth;

/// A policy directory that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PolicyDirError {
    /// The directory or a file in it could not be read.
    #[error("{path}: {source}")]
    Io {
        /// What was being read.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The files were read but do not make a valid policy set.
    #[error(transparent)]
    Invalid(#[from] broker_auth::Error),
    /// The deploy gate refused the bundle (a compile error, a failed test).
    #[error("{}", refusal_text(.0))]
    Refused(Box<broker_auth::policy::bundle::Refusal>),
    /// The files cannot be a bundle (a name, a size, `data.json`).
    #[error("{dir}: {source}")]
    Bundle {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: BundleError,
    },
}

fn refusal_text(r: &broker_auth::policy::bundle::Refusal) -> String {
    let at: Vec<String> = r
        .problems
        .iter()
        .map(|p| match &p.file {
            Some(f) => format!("{f}:{}:{}: {}", p.line, p.col, p.message),
            None => p.message.clone(),
        })
        .collect();
    format!("{} ({})", r.message, at.join("; "))
}

/// The directory as a [`Bundle`]: its `*.rego` files and `data.json`, named by file name (not
/// recursive). This is what a version made from the directory holds.
pub fn read_bundle(dir: &Path) -> Result<Bundle, PolicyDirError> {
    let mut files = BTreeMap::new();
    for s in read_dir(dir)? {
        let name = Path::new(&s.path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        files.insert(name, s.text);
    }
    let data = dir.join(DATA_FILE);
    if data.is_file() {
        let text = std::fs::read_to_string(&data).map_err(|source| PolicyDirError::Io {
            path: data.clone(),
            source,
        })?;
        files.insert(DATA_FILE.to_owned(), text);
    }
    Bundle::new(files).map_err(|source| PolicyDirError::Bundle {
        dir: dir.to_owned(),
        source,
    })
}

/// Read every `*.rego` file of `dir` (not recursive; sorted, so errors are reproducible).
pub fn read_dir(dir: &Path) -> Result<Vec<PolicySource>, PolicyDirError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| PolicyDirError::Io { path, source }
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rego") && p.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).map_err(io(&p))?;
            Ok(PolicySource {
                path: p.display().to_string(),
                text,
            })
        })
        .collect()
}

/// Read a directory as a bundle and put it through the deploy gate.
pub fn load_gated(dir: &Path) -> Result<broker_auth::policy::bundle::Gated, PolicyDirError> {
    broker_auth::policy::bundle::gate(&read_bundle(dir)?)
        .map_err(|r| PolicyDirError::Refused(Box::new(r)))
}

/// Load and validate a directory.
pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyDirError> {
    Ok(PolicySet::from_sources(read_dir(dir)?)?)
}

/// What identifies a version of the directory: every `.rego` file's and `data.json`'s name,
/// size and mtime.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| {
            let p = e.path();
            p.extension().is_some_and(|x| x == "rego")
                || p.file_name().is_some_and(|n| n == DATA_FILE)
        })
        .map(|e| {
            let m = e.metadata().ok();
            (
                e.path(),
                m.as_ref().map_or(0, |m| m.len()),
                m.and_then(|m| m.modified().ok()),
            )
        })
        .collect();
    v.sort();
    v
}

/// Follow `dir` (checked every `every`): on each change, hand the directory as a bundle (or why
/// it cannot be read as one) to `changed`, which puts it through the deploy gate. Runs until
/// dropped; changes made before it started are not reported.
pub async fn follow<F>(dir: PathBuf, every: Duration, mut changed: F)
where
    F: FnMut(Result<Bundle, PolicyDirError>) + Send,
{
    let mut seen = fingerprint(&dir);
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let now = fingerprint(&dir);
        if now == seen {
            continue;
        }
        seen = now;
        changed(read_bundle(&dir));
    }
}

/// What a process without a policy store does with a changed directory: the gate, then serve
/// the new set from `live` (live connections whose grants it narrows are then ended); a refused
/// edit is logged with file:line:col and the previous set keeps serving.
pub fn serve_if_valid(live: &LiveAuth, bundle: Result<Bundle, PolicyDirError>) {
    let gated = bundle.and_then(|b| {
        let hash = b.hash();
        broker_auth::policy::bundle::gate(&b)
            .map(|g| (g, hash))
            .map_err(|r| PolicyDirError::Refused(Box::new(r)))
    });
    match gated {
        Ok((g, hash)) => {
            for w in g.set.warnings() {
                tracing::warn!(warning = %w, "policy");
            }
            tracing::info!(%hash, packages = ?g.set.packages(), tests = g.tests.outcomes.len(), "policy reloaded");
            live.set_policy(g.set);
        }
        Err(e) => {
            tracing::warn!(error = %e, "policy change refused; the previous policy keeps serving")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rego_files_in_order_and_says_which_path_failed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.rego"), "package b\nx := 1\n").unwrap();
        std::fs::write(dir.path().join("a.rego"), "package a\ny := 2\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let s = read_dir(dir.path()).unwrap();
        let names: Vec<_> = s
            .iter()
            .map(|s| s.path.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["a.rego", "b.rego"]);
        let missing = dir.path().join("nope");
        let e = read_dir(&missing).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
