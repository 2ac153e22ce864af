//! NATS subjects and the MQTT → NATS translation (`broker_auth::topic`): `Pattern::to_nats`,
//! `mqtt_topic_to_nats`, `validate_nats_subject`, `nats_matches`, `nats_covers`.
//!
//! Input: text split at newlines into an MQTT pattern `g`, an MQTT topic `t`, NATS patterns `w`
//! and `n`, and a NATS subject `s` (the rest).
//!
//! Properties, beyond "nothing panics on any input":
//! - a translated MQTT topic is a valid NATS subject without wildcards, and translates back;
//! - a translated pattern is one or two valid NATS patterns, and matches the translated topic
//!   exactly when the MQTT pattern matches the topic (`$` topics aside: an MQTT-only rule);
//! - `nats_matches` agrees with a reference; a valid subject matches itself;
//! - `nats_covers(x, x)` for every valid pattern, and `nats_covers` is sound.
#![no_main]
// A broken invariant must abort the run: a panic is how a fuzz target reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use broker_auth::topic::{
    Pattern, mqtt_topic_to_nats, nats_covers, nats_matches, validate_nats_subject,
};
use broker_auth_fuzz::{fields, nats_matches_ref};
use libfuzzer_sys::fuzz_target;

fn nats_pattern(x: &str) -> bool {
    let concrete = validate_nats_subject(x, false).is_ok();
    let pattern = validate_nats_subject(x, true).is_ok();
    if concrete {
        assert!(pattern, "a subject is a pattern: {x:?}");
        assert!(nats_matches(x, x), "a subject matches itself: {x:?}");
        assert!(!x.split('.').any(|tok| tok == "*" || tok == ">"));
    }
    if pattern {
        assert!(nats_covers(x, x), "a pattern covers itself: {x:?}");
    }
    pattern
}

fuzz_target!(|data: &[u8]| {
    let Some(v) = fields(data, 5) else {
        return;
    };
    let (g, t, w, n, s) = (v[0], v[1], v[2], v[3], v[4]);
    let w_ok = nats_pattern(w);
    let n_ok = nats_pattern(n);
    let s_ok = nats_pattern(s) && validate_nats_subject(s, false).is_ok();
    // Matching and coverage take any text without panicking.
    let _ = (nats_matches(w, s), nats_covers(w, n), nats_matches(n, s));

    if w_ok && s_ok {
        assert_eq!(
            nats_matches(w, s),
            nats_matches_ref(w, s),
            "nats_matches({w:?}, {s:?}) disagrees with the reference"
        );
    }
    if w_ok && n_ok && s_ok && nats_covers(w, n) && nats_matches(n, s) {
        assert!(nats_matches(w, s), "covers({w:?}, {n:?}) but {s:?} escapes");
    }

    let subject = mqtt_topic_to_nats(t);
    // NATS subjects are at most 4096 bytes here, MQTT topics up to 65535: only shorter ones
    // must translate to valid subjects.
    if let Ok(subject) = subject.as_ref()
        && subject.len() <= 4096
    {
        validate_nats_subject(subject, false).expect("a translated topic is a NATS subject");
        assert_eq!(
            subject.replace('.', "/"),
            t,
            "translation is level for level"
        );
    }
    let Ok(pattern) = Pattern::parse(g) else {
        return;
    };
    let Ok(subjects) = pattern.to_nats() else {
        return;
    };
    assert!((1..=2).contains(&subjects.len()));
    for x in subjects.iter().filter(|x| x.len() <= 4096) {
        validate_nats_subject(x, true).expect("a translated pattern is a NATS pattern");
    }
    if let Ok(subject) = &subject
        && !t.starts_with('$')
    {
        let nats = subjects.iter().any(|x| nats_matches(x, subject));
        assert_eq!(
            nats,
            pattern.matches_topic(t),
            "MQTT {g:?} vs {t:?} and NATS {subjects:?} vs {subject:?} disagree"
        );
    }
    // The translated pattern covers what the NATS side of a grant adds for the same topic.
    if n_ok && subjects.iter().any(|x| nats_covers(x, n)) && s_ok && nats_matches(n, s) {
        assert!(subjects.iter().any(|x| nats_matches(x, s)));
    }
});
