//! MQTT topics and filters (`broker_auth::topic`, and the per-message check of
//! `grants::CompiledGrants` built on it).
//!
//! Input: text split at newlines into a pattern `g`, a filter `f` and a topic `t` (the rest).
//!
//! Properties, beyond "nothing panics on any input":
//! - the `validate_*` and `is_valid_*` forms agree, `Pattern::parse` accepts exactly the valid
//!   filters and keeps the text, and every valid topic is a valid filter;
//! - a valid filter covers itself, and a valid topic is matched by its own pattern;
//! - `matches_topic` agrees with a reference written from the MQTT rules (`$` topics included);
//! - `covers_filter` is sound: when `g` covers `f`, every topic `f` matches, `g` matches;
//! - `strip_shared` returns a suffix, and the compiled grants' check answers as the pattern.
#![no_main]
// A broken invariant must abort the run: a panic is how a fuzz target reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use broker_auth::grants::{Action, CompiledGrants, Grants};
use broker_auth::topic::{
    Pattern, is_valid_filter, is_valid_topic, strip_shared, validate_filter, validate_topic,
};
use broker_auth_fuzz::{fields, mqtt_matches_ref};
use libfuzzer_sys::fuzz_target;

fn one(s: &str) -> Option<Pattern> {
    assert_eq!(validate_topic(s).is_ok(), is_valid_topic(s), "{s:?}");
    assert_eq!(validate_filter(s).is_ok(), is_valid_filter(s), "{s:?}");
    if is_valid_topic(s) {
        assert!(is_valid_filter(s), "a valid topic is a valid filter: {s:?}");
    }
    if let Ok(inner) = strip_shared(s) {
        assert!(s.ends_with(inner), "strip_shared returns a suffix");
        if inner.len() != s.len() {
            assert!(s.starts_with("$share/") && !inner.is_empty());
        }
    }
    let p = Pattern::parse(s);
    assert_eq!(p.is_ok(), is_valid_filter(s), "{s:?}");
    let p = p.ok()?;
    assert_eq!(p.as_str(), s);
    assert!(p.covers_filter(s), "a filter covers itself: {s:?}");
    if is_valid_topic(s) {
        assert!(p.matches_topic(s), "a topic matches itself: {s:?}");
        assert!(mqtt_matches_ref(s, s));
    }
    Some(p)
}

fuzz_target!(|data: &[u8]| {
    let Some(v) = fields(data, 3) else {
        return;
    };
    let (g, f, t) = (v[0], v[1], v[2]);
    let pg = one(g);
    let pf = one(f);
    let _ = one(t);
    // No input may panic the matchers, valid or not (the per-message path validates first).
    if let Some(pg) = &pg {
        let _ = pg.covers_filter(f);
        let _ = pg.covers_filter(t);
        let _ = pg.matches_topic(t);
        let _ = pg.to_nats();
    }
    let (Some(pg), true) = (&pg, is_valid_topic(t)) else {
        return;
    };
    assert_eq!(
        pg.matches_topic(t),
        mqtt_matches_ref(g, t),
        "matches_topic({g:?}, {t:?}) disagrees with the reference"
    );
    if let Some(pf) = &pf {
        if pg.covers_filter(f) && mqtt_matches_ref(f, t) {
            assert!(
                mqtt_matches_ref(g, t),
                "covers({g:?}, {f:?}) but {t:?} escapes"
            );
        }
        assert_eq!(pf.matches_topic(t), mqtt_matches_ref(f, t));
    }
    // The per-message check over grants made of this pattern.
    let grants = CompiledGrants::compile(Grants {
        publish: vec![g.to_owned()],
        subscribe: vec![g.to_owned()],
        ..Default::default()
    })
    .expect("a valid pattern compiles");
    let by_ref = mqtt_matches_ref(g, t);
    assert_eq!(
        grants.allows(Action::Publish, t),
        by_ref,
        "publish {g:?} {t:?}"
    );
    assert_eq!(grants.allows(Action::Read, t), by_ref, "read {g:?} {t:?}");
    // A subscription to `$share/<group>/<filter>` is judged by its inner filter (a topic here,
    // since `t` is one); a `$share` without a group and a filter is refused.
    let sub_ref = strip_shared(t).is_ok_and(|inner| mqtt_matches_ref(g, inner));
    assert_eq!(
        grants.allows(Action::Subscribe, t),
        sub_ref,
        "subscribe {g:?} {t:?}"
    );
    let shared = format!("$share/grp/{f}");
    let sub = grants.allows(Action::Subscribe, &shared);
    assert_eq!(sub, pf.is_some() && pg.covers_filter(f), "{shared:?}");
});
