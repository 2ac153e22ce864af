//! MQTT topic/filter matching, NATS subject matching, and MQTT → NATS translation.
//!
//! Grants are MQTT patterns (`/`, `+`, `#`). The one question enforcement asks is "is every topic
//! this filter can match covered by this pattern?" ([`Pattern::covers_filter`]); a publish topic is
//! the special case of a filter without wildcards. Matching walks the topic with `split('/')`
//! against pre-split pattern levels, so the per-message check allocates nothing.
//!
//! MQTT rules honoured here: `+` is one whole level, `#` is a whole last level and also matches the
//! parent (`a/#` matches `a`), and a wildcard in the first level never matches a topic whose first
//! level starts with `$` (`$SYS/...`, `$share/...`).

use crate::error::{Error, Result};

/// Longest topic MQTT can carry.
pub const MAX_TOPIC_LEN: usize = 65_535;

/// One level of a compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Level {
    Lit(Box<str>),
    Plus,
    Hash,
}

/// A compiled MQTT pattern (a grant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    text: Box<str>,
    levels: Box<[Level]>,
}

fn check_common(s: &str, what: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::Topic(format!("empty {what}")));
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(Error::Topic(format!(
            "{what} longer than {MAX_TOPIC_LEN} bytes"
        )));
    }
    if s.contains('\0') {
        return Err(Error::Topic(format!("{what} contains NUL")));
    }
    Ok(())
}

/// Check a topic name for PUBLISH: non-empty, no wildcards, no NUL.
pub fn validate_topic(topic: &str) -> Result<()> {
    if is_valid_topic(topic) {
        return Ok(());
    }
    check_common(topic, "topic")?;
    Err(Error::Topic(
        "wildcards are not allowed in a topic name".into(),
    ))
}

/// [`validate_topic`] as one pass over the bytes, for the per-message path.
#[inline]
pub fn is_valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && !topic.bytes().any(|b| matches!(b, b'+' | b'#' | 0))
}

/// Check a topic filter for SUBSCRIBE: `+` and `#` occupy whole levels, `#` only last.
pub fn validate_filter(filter: &str) -> Result<()> {
    if is_valid_filter(filter) {
        return Ok(());
    }
    check_common(filter, "filter")?;
    Err(Error::Topic(format!(
        "wildcards must be whole levels and '#' the last level: {filter:?}"
    )))
}

/// [`validate_filter`] as one pass over the bytes, for the per-message path.
pub fn is_valid_filter(filter: &str) -> bool {
    let b = filter.as_bytes();
    if b.is_empty() || b.len() > MAX_TOPIC_LEN {
        return false;
    }
    let mut level_start = 0;
    for (i, &c) in b.iter().enumerate() {
        match c {
            0 => return false,
            b'/' => level_start = i + 1,
            b'+' | b'#' => {
                let next = b.get(i + 1);
                let whole = i == level_start && matches!(next, None | Some(b'/'));
                if !whole || (c == b'#' && next.is_some()) {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

/// Split `$share/<group>/<filter>` into its inner filter; other filters are returned unchanged.
pub fn strip_shared(filter: &str) -> Result<&str> {
    match filter.strip_prefix("$share/") {
        None => Ok(filter),
        Some(rest) => {
            let (group, inner) = rest
                .split_once('/')
                .ok_or_else(|| Error::Topic("$share needs a group and a filter".into()))?;
            if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
                return Err(Error::Topic("bad $share group or filter".into()));
            }
            Ok(inner)
        }
    }
}

impl Pattern {
    /// Compile a pattern (same syntax as an MQTT filter).
    pub fn parse(s: &str) -> Result<Pattern> {
        validate_filter(s)?;
        let levels = s
            .split('/')
            .map(|l| match l {
                "+" => Level::Plus,
                "#" => Level::Hash,
                lit => Level::Lit(lit.into()),
            })
            .collect();
        Ok(Pattern {
            text: s.into(),
            levels,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern matches a concrete topic. Topics carrying wildcards never match.
    pub fn matches_topic(&self, topic: &str) -> bool {
        !topic.bytes().any(|b| b == b'+' || b == b'#') && self.covers_filter(topic)
    }

    /// Whether every topic `filter` can match is matched by this pattern. `filter` must be valid
    /// (see [`validate_filter`]); shared-subscription prefixes must already be stripped.
    pub fn covers_filter(&self, filter: &str) -> bool {
        let f = filter.as_bytes();
        if f.first() == Some(&b'$')
            && matches!(self.levels.first(), Some(Level::Plus | Level::Hash))
        {
            return false;
        }
        // Walk the filter by byte offsets: a literal level is a prefix compare plus a delimiter
        // check, so only `+` levels search for the next `/`.
        let mut pos = 0usize;
        let mut exhausted = false;
        for (i, g) in self.levels.iter().enumerate() {
            if *g == Level::Hash {
                return true;
            }
            if exhausted {
                return false;
            }
            let end = match g {
                Level::Lit(lit) => {
                    let lit = lit.as_bytes();
                    if !f[pos..].starts_with(lit) {
                        return false;
                    }
                    pos + lit.len()
                }
                _ => f[pos..]
                    .iter()
                    .position(|b| *b == b'/')
                    .map_or(f.len(), |k| pos + k),
            };
            match (g, f.get(end)) {
                (Level::Plus, _) if &f[pos..end] == b"#" => {
                    // `x/#` also matches the parent `x`, which `x/+/#` does not; but when that
                    // parent is not a valid topic (nothing at the top, or the empty topic before
                    // a leading `/`) the two match the same topics.
                    let parent_invalid = i == 0 || (i == 1 && f.first() == Some(&b'/'));
                    return parent_invalid && self.levels.get(i + 1) == Some(&Level::Hash);
                }
                (_, None) => exhausted = true,
                (_, Some(b'/')) => pos = end + 1,
                _ => return false,
            }
        }
        exhausted
    }

    /// The NATS subjects equivalent to this pattern. `a/#` becomes `a` and `a.>` because MQTT's `#`
    /// also matches the parent level. Levels NATS cannot express (empty, or containing `.`, `*`,
    /// `>` or whitespace) are an error: such a grant is dropped rather than widened.
    pub fn to_nats(&self) -> Result<Vec<String>> {
        let mut tokens: Vec<&str> = Vec::with_capacity(self.levels.len());
        for l in self.levels.iter() {
            tokens.push(match l {
                Level::Plus => "*",
                Level::Hash => ">",
                Level::Lit(lit) => {
                    if !is_nats_literal(lit) {
                        return Err(Error::Topic(format!(
                            "pattern {:?} has no NATS equivalent",
                            self.text
                        )));
                    }
                    lit
                }
            });
        }
        if tokens.last() == Some(&">") && tokens.len() > 1 {
            let parent = tokens[..tokens.len() - 1].join(".");
            let all = tokens.join(".");
            Ok(vec![parent, all])
        } else {
            Ok(vec![tokens.join(".")])
        }
    }
}

fn is_nats_literal(token: &str) -> bool {
    !token.is_empty()
        && !token
            .bytes()
            .any(|b| matches!(b, b'.' | b'*' | b'>') || b.is_ascii_whitespace())
}

/// Translate a concrete MQTT topic to the NATS subject nats-server's MQTT listener would use.
pub fn mqtt_topic_to_nats(topic: &str) -> Result<String> {
    validate_topic(topic)?;
    let mut out = Vec::new();
    for level in topic.split('/') {
        if !is_nats_literal(level) {
            return Err(Error::Topic(format!(
                "topic {topic:?} has no NATS equivalent"
            )));
        }
        out.push(level);
    }
    Ok(out.join("."))
}

/// Check a NATS subject (for publish: no wildcards) or pattern (for grants: `*` and a final `>`).
pub fn validate_nats_subject(s: &str, wildcards: bool) -> Result<()> {
    if s.is_empty() || s.len() > 4096 {
        return Err(Error::Topic("subject length".into()));
    }
    let n = s.split('.').count();
    for (i, tok) in s.split('.').enumerate() {
        let ok = match tok {
            "*" => wildcards,
            ">" => wildcards && i + 1 == n,
            t => is_nats_literal(t),
        };
        if !ok {
            return Err(Error::Topic(format!("bad NATS subject {s:?}")));
        }
    }
    Ok(())
}

/// NATS subject matching: `*` one token, `>` one or more trailing tokens.
pub fn nats_matches(pattern: &str, subject: &str) -> bool {
    let mut s = subject.split('.');
    let mut p = pattern.split('.').peekable();
    while let Some(pt) = p.next() {
        match pt {
            ">" => return p.peek().is_none() && s.next().is_some(),
            "*" => {
                if s.next().is_none() {
                    return false;
                }
            }
            lit => {
                if s.next() != Some(lit) {
                    return false;
                }
            }
        }
    }
    s.next().is_none()
}

/// Does NATS pattern `wide` match every subject that pattern `narrow` matches?
pub fn nats_covers(wide: &str, narrow: &str) -> bool {
    let (mut w, mut n) = (wide.split('.'), narrow.split('.'));
    loop {
        match (w.next(), n.next()) {
            (None, None) => return true,
            // `>` takes one or more tokens, and `narrow` has at least one left here.
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(t)) if t != ">" => {}
            (Some(a), Some(b)) if a == b && a != ">" && a != "*" => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nats_coverage_between_patterns() {
        for (wide, narrow) in [
            (">", "a"),
            (">", "a.>"),
            ("a.>", "a.b.c"),
            ("a.>", "a.*"),
            ("a.*", "a.b"),
            ("a.*", "a.*"),
            ("a.b", "a.b"),
            ("_INBOX.>", "_INBOX.>"),
        ] {
            assert!(nats_covers(wide, narrow), "{wide} ⊇ {narrow}");
        }
        for (wide, narrow) in [
            ("a.>", "a"),
            ("a.*", "a.>"),
            ("a.*", "a.b.c"),
            ("a.b", "a.*"),
            ("a.b", "a.c"),
            ("a", "a.b"),
            ("*", ">"),
        ] {
            assert!(!nats_covers(wide, narrow), "{wide} ⊉ {narrow}");
        }
    }

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn filter_validation() {
        for ok in ["a", "a/b", "+", "#", "a/+/c", "a/#", "/", "a//b", "$SYS/#"] {
            validate_filter(ok).unwrap();
        }
        for bad in ["", "a/#/b", "a+", "a/b#", "#/a", "a\0b"] {
            assert!(validate_filter(bad).is_err(), "{bad:?}");
        }
        assert!(validate_topic("a/+").is_err());
        assert!(validate_topic(&"a".repeat(MAX_TOPIC_LEN + 1)).is_err());
    }

    #[test]
    fn topic_matching() {
        assert!(p("devices/d1/#").matches_topic("devices/d1"));
        assert!(p("devices/d1/#").matches_topic("devices/d1/t/x"));
        assert!(!p("devices/d1/#").matches_topic("devices/d2/t"));
        assert!(!p("devices/d1/#").matches_topic("devices/d10"));
        assert!(p("a/+/c").matches_topic("a/b/c"));
        assert!(!p("a/+/c").matches_topic("a/b/c/d"));
        assert!(!p("a/+/c").matches_topic("a/c"));
        assert!(p("a/+").matches_topic("a/"), "empty level is a level");
        assert!(!p("#").matches_topic("$SYS/x"));
        assert!(!p("+/x").matches_topic("$SYS/x"));
        assert!(p("$SYS/#").matches_topic("$SYS/x"));
        assert!(!p("a/#").matches_topic("a/+"), "wildcards are not topics");
    }

    #[test]
    fn filter_coverage() {
        assert!(p("a/#").covers_filter("a/+/c"));
        assert!(p("a/#").covers_filter("a/#"));
        assert!(p("a/#").covers_filter("a"));
        assert!(!p("a/+").covers_filter("a/#"));
        assert!(p("a/+").covers_filter("a/+"));
        assert!(!p("a/b").covers_filter("a/+"));
        assert!(p("#").covers_filter("+/x"));
        assert!(!p("#").covers_filter("$SYS/#"));
        assert!(!p("a/b/#").covers_filter("a"));
        assert!(!p("a/+/#").covers_filter("a/#"));
    }

    #[test]
    fn shared_subscriptions() {
        assert_eq!(strip_shared("$share/g/a/b").unwrap(), "a/b");
        assert_eq!(strip_shared("a/b").unwrap(), "a/b");
        assert!(strip_shared("$share/g").is_err());
        assert!(strip_shared("$share//a").is_err());
        assert!(strip_shared("$share/g+/a").is_err());
    }

    #[test]
    fn nats_translation() {
        assert_eq!(
            p("devices/d1/#").to_nats().unwrap(),
            vec!["devices.d1", "devices.d1.>"]
        );
        assert_eq!(p("#").to_nats().unwrap(), vec![">"]);
        assert_eq!(p("a/+/c").to_nats().unwrap(), vec!["a.*.c"]);
        assert!(p("a.b/c").to_nats().is_err());
        assert!(p("a//c").to_nats().is_err());
        assert!(nats_matches("a.*.c", "a.b.c"));
        assert!(nats_matches("a.>", "a.b.c"));
        assert!(!nats_matches("a.>", "a"));
        assert!(!nats_matches("a.*", "a.b.c"));
        validate_nats_subject("_INBOX.>", true).unwrap();
        assert!(validate_nats_subject("a.>.b", true).is_err());
        assert!(validate_nats_subject("a.*", false).is_err());
        assert!(validate_nats_subject("a..b", true).is_err());
    }

    fn level() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("a"), Just("b"), Just("$x"), Just("")]
    }
    fn wild_level() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("a"), Just("b"), Just("$x"), Just(""), Just("+")]
    }
    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..5)
            .prop_map(|v| v.join("/"))
            .prop_filter("topics are non-empty", |t| !t.is_empty())
    }
    fn filter() -> impl Strategy<Value = String> {
        (prop::collection::vec(wild_level(), 1..5), any::<bool>())
            .prop_map(|(mut v, hash)| {
                if hash {
                    v.push("#");
                }
                v.join("/")
            })
            .prop_filter("filters are non-empty", |f| !f.is_empty())
    }
    /// Reference semantics: enumerate every topic over the alphabet up to a depth and compare.
    fn filter_matches_ref(filter: &str, topic: &str) -> bool {
        let f: Vec<&str> = filter.split('/').collect();
        let t: Vec<&str> = topic.split('/').collect();
        if topic.starts_with('$') && (f[0] == "+" || f[0] == "#") {
            return false;
        }
        for (i, fl) in f.iter().enumerate() {
            if *fl == "#" {
                return t.len() >= i;
            }
            match t.get(i) {
                None => return false,
                Some(tl) if *fl == "+" || fl == tl => {}
                _ => return false,
            }
        }
        t.len() == f.len()
    }

    fn all_topics(depth: usize) -> Vec<String> {
        let alphabet = ["a", "b", "$x", ""];
        let mut out: Vec<String> = alphabet.iter().map(|s| s.to_string()).collect();
        let mut frontier = out.clone();
        for _ in 1..depth {
            let mut next = Vec::new();
            for t in &frontier {
                for l in alphabet {
                    next.push(format!("{t}/{l}"));
                }
            }
            out.extend(next.iter().cloned());
            frontier = next;
        }
        out.retain(|t| !t.is_empty());
        out
    }

    proptest! {
        #[test]
        fn matching_agrees_with_reference(f in filter(), t in topic()) {
            prop_assert_eq!(p(&f).matches_topic(&t), filter_matches_ref(&f, &t));
        }

        #[test]
        fn coverage_is_sound_and_complete(g in filter(), f in filter()) {
            // covers(g, f) <=> every topic matched by f (up to depth 6) is matched by g.
            let universe = all_topics(6);
            let semantic = universe.iter().all(|t| !filter_matches_ref(&f, t) || filter_matches_ref(&g, t));
            let covered = p(&g).covers_filter(&f);
            if covered {
                prop_assert!(semantic, "covers({g}, {f}) but some topic escapes");
            }
            // Completeness holds whenever the filter is no deeper than the universe can show.
            if f.split('/').count() < 5 && g.split('/').count() < 5 {
                prop_assert_eq!(covered, semantic, "g={} f={}", g, f);
            }
        }

        #[test]
        fn nats_translation_agrees(g in filter(), t in topic()) {
            let pat = p(&g);
            if let (Ok(subjects), Ok(subject)) = (pat.to_nats(), mqtt_topic_to_nats(&t)) {
                // `$`-topics are an MQTT-only rule; NATS translation is used for non-$ subjects.
                if !t.starts_with('$') {
                    let nats = subjects.iter().any(|s| nats_matches(s, &subject));
                    prop_assert_eq!(nats, pat.matches_topic(&t), "g={} t={}", g, t);
                }
            }
        }
    }
}
