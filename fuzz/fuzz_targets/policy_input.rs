//! The policy input (`broker_auth::policy`): a principal, built from arbitrary fields directly or
//! from token claims (`Principal::from_claims`), serialized into the input of both decisions
//! (`{"principal"}` for the grants, `AclInput` for `allow`), converted for Rego, and the shipped
//! policies evaluated on it.
//!
//! Input: text split at newlines into
//! `control`, `id`, `tenant`, `app_id`, `roles`, `scopes`, `groups`, `devices`, `client_id`,
//! `clientid`, `topic` (the rest, so the topic may hold newlines). Lists are comma-separated;
//! an empty `tenant`, `app_id` or `client_id` is absent. `control` is three digits, then flags:
//! - digit 1: identity type, `0`–`7` in `identity::ALL_TYPES` order, `8` none (the id's prefix
//!   decides, as for a token without `idt`);
//! - digit 2: protocol, `0` mqtt, `1` nats, `2` http;
//! - digit 3: action, `0` publish, `1` subscribe, `2` read;
//! - `c`: build the principal through `Principal::from_claims`, with `app_id` as a claim;
//! - `p`: every field and list item is `%XX`-decoded (newlines, commas, NUL, invalid UTF-8);
//! - `h`: `topic`, `clientid` and `client_id` are repeated past MQTT's 65535 bytes;
//! - `i`: also evaluate on the interpreter and check it agrees with the RVM (slower).
//!
//! Properties, beyond "nothing panics on any input":
//! - `from_claims` accepts exactly the claims that make a valid principal, and copies them;
//! - the JSON of the principal and of `AclInput` has the documented shape and nothing else,
//!   every string (quotes, NUL, control characters, huge) round-trips exactly, through
//!   `serde_json` and through the conversion to Rego and back;
//! - for a valid principal the shipped policies decide: grants compile, the memoized grants are
//!   the grants, the superuser flag follows the documented scopes and groups, another device's
//!   topics stay out of reach, and the `allow` decision is a boolean that agrees with the grants.
#![no_main]
// A broken invariant must abort the run: a panic is how a fuzz target reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use broker_auth::decision::DenyCode;
use broker_auth::grants::Action;
use broker_auth::identity::{ALL_TYPES, IdentityType};
use broker_auth::policy::{AclInput, Evaluator};
use broker_auth::principal::{Principal, Protocol};
use broker_auth::token::{Audience, Claims, TokenUse};
use broker_auth::topic::MAX_TOPIC_LEN;
use broker_auth_fuzz::{AUDIENCE, ECHO_RULE, ISSUER, NOW, echo_policy, fields, pct_decode, policy};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const PROTOCOLS: [(Protocol, &str); 3] = [
    (Protocol::Mqtt, "mqtt"),
    (Protocol::Nats, "nats"),
    (Protocol::Http, "http"),
];
const ACTIONS: [(Action, u64); 3] = [
    (Action::Publish, 2),
    (Action::Subscribe, 4),
    (Action::Read, 1),
];
/// A device no generated principal acts for unless the input names it.
const OTHER_DEVICE: &str = "dev-FUZZOTHER";

struct Input {
    kind: Option<IdentityType>,
    protocol: (Protocol, &'static str),
    action: (Action, u64),
    via_claims: bool,
    interpreter: bool,
    id: String,
    tenant: Option<String>,
    app_id: Option<String>,
    roles: Vec<String>,
    scopes: Vec<String>,
    groups: Vec<String>,
    devices: Vec<String>,
    client_id: Option<String>,
    clientid: String,
    topic: String,
}

fn parse(data: &[u8]) -> Option<Input> {
    let f = fields(data, 11)?;
    let control = f[0].as_bytes();
    let digit = |i: usize, n: usize| {
        usize::from(control.get(i).copied().unwrap_or(b'0').wrapping_sub(b'0')) % n
    };
    let flags = control.get(3..).unwrap_or_default();
    let (pct, huge) = (flags.contains(&b'p'), flags.contains(&b'h'));
    let text = |s: &str| if pct { pct_decode(s) } else { s.to_owned() };
    let opt = |s: &str| (!s.is_empty()).then(|| text(s));
    let list = |s: &str| {
        if s.is_empty() {
            vec![]
        } else {
            s.split(',').map(&text).collect()
        }
    };
    // Just past the longest MQTT topic, in bytes.
    let grow = |s: String| {
        if huge && !s.is_empty() {
            s.repeat(MAX_TOPIC_LEN / s.len() + 1)
        } else {
            s
        }
    };
    Some(Input {
        kind: ALL_TYPES.get(digit(0, 9)).copied(),
        protocol: PROTOCOLS[digit(1, 3)],
        action: ACTIONS[digit(2, 3)],
        via_claims: flags.contains(&b'c'),
        interpreter: flags.contains(&b'i'),
        id: text(f[1]),
        tenant: opt(f[2]),
        app_id: opt(f[3]),
        roles: list(f[4]),
        scopes: list(f[5]),
        groups: list(f[6]),
        devices: list(f[7]),
        client_id: opt(f[8]).map(grow),
        clientid: grow(text(f[9])),
        topic: grow(text(f[10])),
    })
}

/// The principal the input describes: through `from_claims` (checked against what it must
/// copy), or directly. Also returned when invalid, so hostile names still reach the builder.
fn principal(i: &Input) -> Principal {
    let kind = i
        .kind
        .or_else(|| IdentityType::of_id(&i.id))
        .unwrap_or(IdentityType::Device);
    let mut p = Principal {
        id: i.id.clone(),
        kind,
        tenant: i.tenant.clone(),
        roles: i.roles.clone(),
        scopes: i.scopes.clone(),
        groups: i.groups.clone(),
        devices: i.devices.clone(),
        client_id: i.client_id.clone(),
        protocol: i.protocol.0,
    };
    if !i.via_claims {
        return p;
    }
    let claims = Claims {
        iss: ISSUER.into(),
        sub: i.id.clone(),
        aud: Audience::One(AUDIENCE.into()),
        iat: NOW,
        nbf: NOW,
        exp: NOW + 60,
        jti: "fuzz".into(),
        sid: None,
        idt: i.kind,
        tenant: i.tenant.clone(),
        app_id: i.app_id.clone(),
        roles: i.roles.clone(),
        scopes: i.scopes.clone(),
        groups: i.groups.clone(),
        devices: i.devices.clone(),
        token_use: TokenUse::Access,
    };
    let text = serde_json::to_string(&claims).unwrap();
    assert_eq!(
        serde_json::from_str::<Claims>(&text).unwrap(),
        claims,
        "claims round trip"
    );
    p.tenant = i.tenant.clone().or_else(|| i.app_id.clone());
    p.client_id = i.client_id.as_ref().map(|c| c.chars().take(256).collect());
    let known = i.kind.or_else(|| IdentityType::of_id(&i.id)).is_some();
    let expected = if known && p.validate().is_ok() {
        Ok(p.clone())
    } else {
        Err(DenyCode::InvalidPrincipal)
    };
    let got = Principal::from_claims(&claims, i.protocol.0, i.client_id.as_deref());
    assert_eq!(got, expected, "from_claims");
    p
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().map(|s| Value::String(s.clone())).collect())
}

/// The principal's JSON has exactly the documented fields, each holding what the principal holds.
fn check_principal_json(p: &Principal, protocol: &str) -> Value {
    let mut want = json!({
        "id": p.id,
        "type": p.kind.as_str(),
        "roles": strings(&p.roles),
        "scopes": strings(&p.scopes),
        "groups": strings(&p.groups),
        "protocol": protocol,
    });
    let obj = want.as_object_mut().unwrap();
    if let Some(t) = &p.tenant {
        obj.insert("tenant".into(), t.clone().into());
    }
    if !p.devices.is_empty() {
        obj.insert("devices".into(), strings(&p.devices));
    }
    if let Some(c) = &p.client_id {
        obj.insert("client_id".into(), c.clone().into());
    }
    let got = serde_json::to_value(p).unwrap();
    assert_eq!(got, want, "the principal's JSON");
    let text = serde_json::to_string(p).unwrap();
    assert!(
        !text.bytes().any(|b| b < 0x20),
        "control characters are escaped"
    );
    assert_eq!(
        serde_json::from_str::<Principal>(&text).unwrap(),
        *p,
        "principal round trip"
    );
    got
}

/// What Rego sees of `input` is `input`: every string exactly.
fn check_rego_sees(input: &Value) {
    let seen = echo_policy()
        .eval_json(ECHO_RULE, input)
        .expect("any JSON is an input");
    assert_eq!(&seen, input, "JSON → Rego → JSON");
}

fn is_superuser(p: &Principal) -> bool {
    p.scopes.iter().any(|s| s == "mqtt.admin")
        || p.groups.iter().any(|g| g == "admin" || g == "mqtt.admin")
}

fn decide(p: &Principal, acl: &AclInput<'_>, i: &Input) {
    let set = policy();
    let (action, topic) = (i.action.0, i.topic.as_str());
    if p.validate().is_err() {
        // Enforcement never asks about an invalid principal; the tools may. Any answer but a
        // panic will do.
        let _ = set.grants(p);
        let _ = set.eval_allow(acl, Evaluator::Rvm);
        return;
    }
    let grants = set.grants(p).expect("a valid principal's grants");
    let cached = set.grants_cached(p).expect("memoized grants");
    assert_eq!(*cached, grants, "the memo answers as the policy");
    assert_eq!(grants.superuser(), is_superuser(p), "superuser marks");
    if !grants.superuser() && p.id != OTHER_DEVICE && !p.devices.iter().any(|d| d == OTHER_DEVICE) {
        let other = format!("devices/{OTHER_DEVICE}/cmd/x");
        assert!(!grants.allows(Action::Publish, &other), "{other}");
        assert!(!grants.allows(Action::Subscribe, &other), "{other}");
        assert!(!grants.allows(Action::Subscribe, "#"));
    }
    let allow = set
        .eval_allow(acl, Evaluator::Rvm)
        .expect("allow is a boolean");
    assert_eq!(
        allow,
        grants.allows(action, topic),
        "allow and the grants disagree on {action:?} {:?} ({} bytes, {} chars)",
        topic.chars().take(80).collect::<String>(),
        topic.len(),
        topic.chars().count()
    );
    if i.interpreter {
        let by_interp = set
            .grants_with(p, Evaluator::Interpreter)
            .expect("grants on the interpreter");
        assert_eq!(by_interp, grants, "RVM and interpreter grants");
        let allow_interp = set
            .eval_allow(acl, Evaluator::Interpreter)
            .expect("allow on the interpreter");
        assert_eq!(allow_interp, allow, "RVM and interpreter allow");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(i) = parse(data) else {
        return;
    };
    let p = principal(&i);
    let pj = check_principal_json(&p, i.protocol.1);
    let acl = AclInput::new(&p, &i.clientid, i.action.0, &i.topic);
    let aj = serde_json::to_value(&acl).unwrap();
    let want = json!({
        "principal": pj,
        "clientid": i.clientid,
        "topic": i.topic,
        "acc": i.action.1,
        "action": i.action.0.as_str(),
    });
    assert_eq!(aj, want, "AclInput's JSON");
    assert_eq!(
        serde_json::from_str::<Value>(&serde_json::to_string(&acl).unwrap()).unwrap(),
        aj,
        "AclInput's text is the same JSON"
    );
    check_rego_sees(&aj);
    check_rego_sees(&json!({ "principal": pj }));
    decide(&p, &acl, &i);
});
