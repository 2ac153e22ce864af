//! Policy versions as stored: every accepted bundle, numbered 1, 2, 3 … (never reused), one live.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a version came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyOrigin {
    /// The `--policies` directory (its seed, or an edit there).
    Dir,
    /// `POST /policies`.
    Api,
    /// `POST /policies/rollback`.
    Rollback,
}

impl PolicyOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyOrigin::Dir => "dir",
            PolicyOrigin::Api => "api",
            PolicyOrigin::Rollback => "rollback",
        }
    }
}

/// One version of the policy: its metadata and its whole bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersionRecord {
    /// 1, 2, 3 …, assigned by the store.
    pub version: u64,
    /// The bundle's hash (`Bundle::hash`).
    pub hash: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Identity id, API key id, `dir` or `cli`.
    pub author: String,
    pub source: PolicyOrigin,
    pub message: String,
    /// File name → text (`*.rego`, `data.json`).
    pub files: BTreeMap<String, String>,
}
