//! Grants remembered per principal for the life of one policy set.
//!
//! Reconnecting clients are the common case at every connect path, so Rego runs once per
//! distinct principal. The key is what the grants can depend on: the principal's fields, except
//! `client_id` and `protocol` when no policy file can read them — a fleet whose devices connect
//! with random client ids, over MQTT and NATS, then shares one entry per identity. A field is
//! left out only when no policy file mentions its name outside comments and none uses a builtin
//! or an index that reads an object's fields by a computed name; otherwise it is in the key, so
//! a policy that does read it never gets another client's answer. The cache is a bounded LRU.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lru::LruCache;

use super::PolicySource;
use crate::error::Result;
use crate::grants::CompiledGrants;
use crate::principal::{Principal, Protocol};

/// Principals whose grants a policy set remembers (least recently used go first).
const ENTRIES: usize = 10_000;

/// Builtins that see an object's fields without naming them.
const REFLECTIVE: &[&str] = &[
    "json.marshal",
    "yaml.marshal",
    "json.filter",
    "json.remove",
    "json.patch",
    "object.keys",
    "object.filter",
    "object.remove",
    "object.union",
    "walk(",
    "input.principal[",
];

/// Which optional principal fields are part of the cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyFields {
    pub(crate) client_id: bool,
    pub(crate) protocol: bool,
}

impl KeyFields {
    /// What the non-test `sources` can read.
    pub(crate) fn of(sources: &[PolicySource]) -> KeyFields {
        let code: String = sources
            .iter()
            .filter(|s| !s.is_test())
            .map(|s| strip_comments(&s.text))
            .collect();
        let reflective = REFLECTIVE.iter().any(|b| code.contains(b)) || dynamic_get(&code);
        KeyFields {
            client_id: reflective || code.contains("client_id"),
            protocol: reflective || code.contains("protocol"),
        }
    }
}

/// `object.get(x, k, …)` with a key that is not a string literal.
fn dynamic_get(code: &str) -> bool {
    code.match_indices("object.get(").any(|(i, m)| {
        let args = &code[i + m.len()..];
        // Skip the first argument (up to its comma at depth 0), then look at the key.
        let mut depth = 0usize;
        for (j, c) in args.char_indices() {
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' if depth == 0 => return true,
                ')' | ']' | '}' => depth -= 1,
                ',' if depth == 0 => return !args[j + 1..].trim_start().starts_with('"'),
                _ => {}
            }
        }
        true
    })
}

/// Rego without its comments (`#` to the end of the line, outside string literals).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push(c);
                while let Some(c) = chars.next() {
                    out.push(c);
                    match c {
                        '\\' => out.extend(chars.next()),
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '`' => {
                out.push(c);
                for c in chars.by_ref() {
                    out.push(c);
                    if c == '`' {
                        break;
                    }
                }
            }
            '#' => {
                if chars.by_ref().any(|c| c == '\n') {
                    out.push('\n');
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The memo: bounded, keyed by [`KeyFields`], counting hits and misses.
pub(crate) struct GrantsCache {
    fields: KeyFields,
    entries: Mutex<LruCache<String, Arc<CompiledGrants>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl GrantsCache {
    pub(crate) fn new(fields: KeyFields) -> Self {
        GrantsCache {
            fields,
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(ENTRIES).unwrap_or(NonZeroUsize::MIN),
            )),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub(crate) fn fields(&self) -> KeyFields {
        self.fields
    }

    fn key(&self, p: &Principal) -> Result<String> {
        let mut k = p.clone();
        if !self.fields.client_id {
            k.client_id = None;
        }
        if !self.fields.protocol {
            k.protocol = Protocol::Mqtt;
        }
        serde_json::to_string(&k).map_err(super::policy_err)
    }

    /// The cached grants of `p`, or `compute` them (outside the lock) and remember them.
    pub(crate) fn get_or(
        &self,
        p: &Principal,
        compute: impl FnOnce() -> Result<CompiledGrants>,
    ) -> Result<Arc<CompiledGrants>> {
        let key = self.key(p)?;
        if let Some(g) = self
            .entries
            .lock()
            .ok()
            .and_then(|mut c| c.get(&key).cloned())
        {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(g);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let g = Arc::new(compute()?);
        if let Ok(mut c) = self.entries.lock() {
            c.put(key, g.clone());
        }
        Ok(g)
    }

    /// (hits, misses) so far.
    pub(crate) fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Vec<PolicySource> {
        vec![PolicySource {
            path: "p.rego".into(),
            text: text.into(),
        }]
    }

    #[test]
    fn fields_are_left_out_only_when_no_code_can_read_them() {
        let none = KeyFields {
            client_id: false,
            protocol: false,
        };
        let plain = "package broker\n# input: client_id, protocol\ng := {\"t\": \"a/#\"}\n";
        assert_eq!(KeyFields::of(&src(plain)), none, "comments do not count");
        let s = KeyFields::of(&src("package x\nc := input.principal.client_id\n"));
        assert!(s.client_id && !s.protocol);
        let s = KeyFields::of(&src(
            "package x\np := object.get(input.principal, \"protocol\", 1)\n",
        ));
        assert!(s.protocol && !s.client_id);
        for reflective in [
            "package x\nk := json.marshal(input.principal)\n",
            "package x\nk := input.principal[f]\n",
            "package x\nk := object.get(input.principal, f, 1)\n",
            "package x\nk := object.keys(input.principal)\n",
        ] {
            let s = KeyFields::of(&src(reflective));
            assert!(s.client_id && s.protocol, "{reflective}");
        }
        // A `#` inside a string is not a comment.
        let s = KeyFields::of(&src("package x\nt := \"a/# client_id\"\n"));
        assert!(s.client_id);
        // Test files are not served, so they do not count.
        let mut v = src(plain);
        v.push(PolicySource {
            path: "p_test.rego".into(),
            text: "package x\nt := input.principal.client_id\n".into(),
        });
        assert_eq!(KeyFields::of(&v), none);
    }
}
