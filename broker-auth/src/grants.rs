//! Grants: what a principal may publish and subscribe, computed once by the policy and compiled
//! into patterns so every later message is checked by a match, never by Rego.

use serde::{Deserialize, Serialize};

use crate::decision::{Decision, DenyCode};
use crate::error::{Error, Result};
use crate::topic::{self, Pattern};

/// Grants as the policy returns them (`data.broker.grants`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Bypasses every topic check (scope `mqtt.admin`, group `admin`/`mqtt.admin`).
    #[serde(default)]
    pub superuser: bool,
    /// MQTT-syntax patterns the principal may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// MQTT-syntax patterns the principal may subscribe to (and receive from).
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// NATS-only additions (inbox, JetStream API subjects).
    #[serde(default)]
    pub nats: NatsGrants,
    /// MQTT client ids the principal may connect with: exact ids, or prefixes ending in `*`.
    /// Absent (or null): any client id. Either way a session belongs to the identity that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ids: Option<Vec<String>>,
}

/// NATS-only grants, in NATS subject syntax.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsGrants {
    /// Extra subjects to publish.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Extra subjects to subscribe.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Whether the client may answer requests (the user JWT's `resp`).
    #[serde(default)]
    pub allow_responses: bool,
}

/// What a client wants to do with a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// PUBLISH (and the Last Will topic).
    Publish,
    /// SUBSCRIBE with a filter.
    Subscribe,
    /// Delivery of a message on a topic to the client (mosquitto-go-auth `acc` 1).
    Read,
}

impl Action {
    /// Lower-case name as used in policy input.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
            Action::Read => "read",
        }
    }
}

/// NATS permissions derived from grants (the user JWT's `pub`, `sub`, `resp`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatsPermissions {
    /// Subjects allowed to publish.
    pub publish: Vec<String>,
    /// Subjects allowed to subscribe.
    pub subscribe: Vec<String>,
    /// Whether replies to received requests are allowed.
    pub allow_responses: bool,
}

/// One allowed MQTT client id: exact, or every id that starts with a prefix (`name-*`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum ClientIdPattern {
    Exact(String),
    Prefix(String),
}

/// Longest client id pattern accepted (the principal keeps at most 256 characters of an id).
const MAX_CLIENT_ID_PATTERN: usize = 256;

impl ClientIdPattern {
    fn parse(s: &str) -> Result<ClientIdPattern> {
        let bad = |why: &str| Err(Error::policy(format!("client id pattern {s:?}: {why}")));
        if s.is_empty() || s.len() > MAX_CLIENT_ID_PATTERN {
            return bad("must be 1-256 bytes");
        }
        match s.strip_suffix('*') {
            Some(p) if p.contains('*') => bad("`*` may only end a pattern"),
            Some(p) => Ok(ClientIdPattern::Prefix(p.to_owned())),
            None if s.contains('*') => bad("`*` may only end a pattern"),
            None => Ok(ClientIdPattern::Exact(s.to_owned())),
        }
    }

    fn matches(&self, client_id: &str) -> bool {
        match self {
            ClientIdPattern::Exact(e) => e == client_id,
            ClientIdPattern::Prefix(p) => client_id.starts_with(p.as_str()),
        }
    }
}

/// Grants ready for per-message checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledGrants {
    superuser: bool,
    publish: Box<[Pattern]>,
    subscribe: Box<[Pattern]>,
    client_ids: Option<Box<[ClientIdPattern]>>,
    nats: NatsPermissions,
    source: Grants,
}

impl CompiledGrants {
    /// Compile and validate. An invalid pattern fails the whole set: a policy bug must be visible
    /// and must deny, not silently widen or narrow access.
    pub fn compile(source: Grants) -> Result<CompiledGrants> {
        let compile = |v: &[String]| {
            v.iter()
                .map(|s| Pattern::parse(s))
                .collect::<Result<Box<[_]>>>()
        };
        let publish = compile(&source.publish)?;
        let subscribe = compile(&source.subscribe)?;
        for s in source.nats.publish.iter().chain(&source.nats.subscribe) {
            topic::validate_nats_subject(s, true)?;
        }
        let client_ids = source
            .client_ids
            .as_ref()
            .map(|v| v.iter().map(|s| ClientIdPattern::parse(s)).collect())
            .transpose()?;
        let nats = translate_to_nats(source.superuser, &publish, &subscribe, &source.nats);
        Ok(CompiledGrants {
            superuser: source.superuser,
            publish,
            subscribe,
            client_ids,
            nats,
            source,
        })
    }

    /// Grants that allow nothing (what a principal has when its policy fails).
    pub fn nothing() -> CompiledGrants {
        CompiledGrants {
            superuser: false,
            publish: Box::new([]),
            subscribe: Box::new([]),
            client_ids: None,
            nats: NatsPermissions::default(),
            source: Grants::default(),
        }
    }

    /// Does `self` allow everything `other` allows (topics, subjects, responses)? This is how a
    /// live connection's grants are found to have shrunk. Conservative: a pattern of `other`
    /// counts as covered only when one pattern of `self` covers it whole, so a union that covers
    /// it only together reads as narrower — the connection then reconnects, it is never left
    /// with more than it may have. Client ids are checked separately (they are per connection).
    pub fn covers(&self, other: &CompiledGrants) -> bool {
        if self.superuser {
            return true;
        }
        if other.superuser {
            return false;
        }
        let patterns = |mine: &[Pattern], theirs: &[Pattern]| {
            theirs
                .iter()
                .all(|p| mine.iter().any(|q| q.covers_filter(p.as_str())))
        };
        let subjects = |mine: &[String], theirs: &[String]| {
            theirs
                .iter()
                .all(|s| mine.iter().any(|q| topic::nats_covers(q, s)))
        };
        let (mine, theirs) = (&self.source.nats, &other.source.nats);
        patterns(&self.publish, &other.publish)
            && patterns(&self.subscribe, &other.subscribe)
            && subjects(&mine.publish, &theirs.publish)
            && subjects(&mine.subscribe, &theirs.subscribe)
            && (mine.allow_responses || !theirs.allow_responses)
    }

    /// May the principal connect with this MQTT client id? Grants without `client_ids` allow
    /// any; grants with them refuse a connect that names no client id (nothing to check).
    pub fn allows_client_id(&self, client_id: Option<&str>) -> bool {
        match (&self.client_ids, client_id) {
            (None, _) => true,
            (Some(pats), Some(id)) => pats.iter().any(|p| p.matches(id)),
            (Some(_), None) => false,
        }
    }

    /// Superuser?
    pub fn superuser(&self) -> bool {
        self.superuser
    }

    /// True when nothing at all is granted.
    pub fn is_empty(&self) -> bool {
        !self.superuser
            && self.publish.is_empty()
            && self.subscribe.is_empty()
            && self.source.nats.publish.is_empty()
            && self.source.nats.subscribe.is_empty()
    }

    /// The grants as the policy produced them.
    pub fn source(&self) -> &Grants {
        &self.source
    }

    /// The per-message check. Allocation-free: validation scans and pattern walks only.
    pub fn check(&self, action: Action, topic: &str) -> Decision {
        // Well-formedness first: not even a superuser publishes to `a/#` or subscribes to `a/#/b`.
        let target = match action {
            Action::Publish | Action::Read if topic::is_valid_topic(topic) => topic,
            Action::Publish | Action::Read => {
                return Decision::deny(DenyCode::InvalidTopic, "invalid topic name");
            }
            Action::Subscribe => match topic::strip_shared(topic) {
                Ok(inner) if topic::validate_filter(inner).is_ok() => inner,
                _ => return Decision::deny(DenyCode::InvalidTopic, "invalid topic filter"),
            },
        };
        if self.superuser {
            return Decision::permit("superuser", ());
        }
        // The target is validated above, so a topic is just a filter without wildcards.
        let patterns = match action {
            Action::Publish => &self.publish,
            Action::Read | Action::Subscribe => &self.subscribe,
        };
        let granted = patterns.iter().any(|p| p.covers_filter(target));
        if granted {
            Decision::permit("granted", ())
        } else {
            Decision::deny(
                DenyCode::NotGranted,
                "not covered by the principal's grants",
            )
        }
    }

    /// Bool form of [`CompiledGrants::check`] for callers that only branch.
    pub fn allows(&self, action: Action, topic: &str) -> bool {
        self.check(action, topic).is_permit()
    }

    /// NATS permissions: MQTT patterns translated (`/`→`.`, `+`→`*`, `#`→`>`) plus the NATS-only
    /// subjects. A superuser gets `>` both ways. Patterns NATS cannot express are left out (deny).
    /// Computed once, with the grants.
    pub fn nats_permissions(&self) -> &NatsPermissions {
        &self.nats
    }
}

fn translate_to_nats(
    superuser: bool,
    publish: &[Pattern],
    subscribe: &[Pattern],
    nats: &NatsGrants,
) -> NatsPermissions {
    if superuser {
        return NatsPermissions {
            publish: vec![">".into()],
            subscribe: vec![">".into()],
            allow_responses: true,
        };
    }
    let translate = |pats: &[Pattern], extra: &[String]| {
        let mut out: Vec<String> = pats
            .iter()
            .filter_map(|p| p.to_nats().ok())
            .flatten()
            .collect();
        out.extend(extra.iter().cloned());
        out.sort();
        out.dedup();
        out
    };
    NatsPermissions {
        publish: translate(publish, &nats.publish),
        subscribe: translate(subscribe, &nats.subscribe),
        allow_responses: nats.allow_responses,
    }
}

/// Parse grants from the policy's JSON output.
pub fn grants_from_json(v: serde_json::Value) -> Result<Grants> {
    serde_json::from_value(v)
        .map_err(|e| Error::policy_from(format!("grants have the wrong shape: {e}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> CompiledGrants {
        CompiledGrants::compile(Grants {
            publish: vec!["devices/d1/#".into()],
            subscribe: vec!["devices/d1/cmd/#".into()],
            nats: NatsGrants {
                subscribe: vec!["_INBOX.>".into()],
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn per_message_checks() {
        let g = device();
        assert!(g.allows(Action::Publish, "devices/d1/telemetry"));
        assert!(!g.allows(Action::Publish, "devices/d2/telemetry"));
        assert!(!g.allows(Action::Publish, "devices/d1/+"));
        assert!(g.allows(Action::Subscribe, "devices/d1/cmd/#"));
        assert!(g.allows(Action::Subscribe, "$share/grp/devices/d1/cmd/+"));
        assert!(!g.allows(Action::Subscribe, "devices/+/cmd/#"));
        assert!(!g.allows(Action::Subscribe, "$SYS/#"));
        assert!(g.allows(Action::Read, "devices/d1/cmd/reboot"));
        assert!(!g.allows(Action::Read, "devices/d1/telemetry"));
        let d = g.check(Action::Subscribe, "a/#/b");
        assert_eq!(d.denial().unwrap().code, DenyCode::InvalidTopic);
        let d = g.check(Action::Publish, "devices/d2/x");
        assert_eq!(d.denial().unwrap().code, DenyCode::NotGranted);
    }

    #[test]
    fn superuser_bypasses_but_still_needs_valid_topics() {
        let g = CompiledGrants::compile(Grants {
            superuser: true,
            ..Default::default()
        })
        .unwrap();
        assert!(g.allows(Action::Subscribe, "$SYS/#"));
        assert!(g.allows(Action::Publish, "anything/at/all"));
        assert!(!g.allows(Action::Publish, "bad/#"));
        assert!(!g.allows(Action::Subscribe, "a/#/b"));
        assert!(!g.allows(Action::Subscribe, "$share/g"));
        assert_eq!(g.nats_permissions().publish, vec![">"]);
    }

    #[test]
    fn invalid_patterns_fail_the_whole_set() {
        let bad = Grants {
            publish: vec!["ok/#".into(), "bad/#/x".into()],
            ..Default::default()
        };
        assert!(CompiledGrants::compile(bad).is_err());
        let bad = Grants {
            nats: NatsGrants {
                publish: vec!["a.>.b".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(CompiledGrants::compile(bad).is_err());
        assert!(grants_from_json(serde_json::json!({"publish": "x"})).is_err());
        assert!(
            grants_from_json(serde_json::json!({"publsh": []})).is_err(),
            "typos are errors"
        );
    }

    #[test]
    fn client_ids_are_exact_or_prefixes_and_absent_means_any() {
        let with = |ids: &[&str]| {
            CompiledGrants::compile(Grants {
                client_ids: Some(ids.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            })
        };
        assert!(device().allows_client_id(Some("anything")));
        assert!(device().allows_client_id(None));
        let g = with(&["dev-d1", "dev-d1-*"]).unwrap();
        for ok in ["dev-d1", "dev-d1-", "dev-d1-sensor"] {
            assert!(g.allows_client_id(Some(ok)), "{ok}");
        }
        for no in ["dev-d10", "dev-d", "monitor", ""] {
            assert!(!g.allows_client_id(Some(no)), "{no}");
        }
        assert!(
            !g.allows_client_id(None),
            "a constrained principal must name its client id"
        );
        assert!(!with(&[]).unwrap().allows_client_id(Some("x")));
        assert!(with(&["*"]).unwrap().allows_client_id(Some("x")));
        for bad in ["", "a*b", "**", &"x".repeat(257)] {
            assert!(with(&[bad]).is_err(), "{bad:?}");
        }
        assert_eq!(
            serde_json::to_value(Grants::default())
                .unwrap()
                .get("client_ids"),
            None,
            "absent stays absent"
        );
    }

    #[test]
    fn coverage_tells_a_shrink_from_a_growth() {
        let g = |publish: &[&str], subscribe: &[&str], nats_sub: &[&str], resp: bool| {
            CompiledGrants::compile(Grants {
                publish: publish.iter().map(|s| s.to_string()).collect(),
                subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
                nats: NatsGrants {
                    subscribe: nats_sub.iter().map(|s| s.to_string()).collect(),
                    allow_responses: resp,
                    ..Default::default()
                },
                ..Default::default()
            })
            .unwrap()
        };
        let old = g(
            &["devices/d1/#"],
            &["devices/d1/cmd/#"],
            &["_INBOX.>"],
            true,
        );
        assert!(old.covers(&old));
        let wider = g(&["devices/#"], &["devices/d1/#"], &["_INBOX.>", "x"], true);
        assert!(wider.covers(&old) && !old.covers(&wider));
        for narrower in [
            g(
                &["devices/d1/telemetry"],
                &["devices/d1/cmd/#"],
                &["_INBOX.>"],
                true,
            ),
            g(
                &["devices/d1/#"],
                &["devices/d1/cmd/ota/#"],
                &["_INBOX.>"],
                true,
            ),
            g(
                &["devices/d1/#"],
                &["devices/d1/cmd/#"],
                &["_INBOX.a.>"],
                true,
            ),
            g(
                &["devices/d1/#"],
                &["devices/d1/cmd/#"],
                &["_INBOX.>"],
                false,
            ),
        ] {
            assert!(!narrower.covers(&old), "{:?}", narrower.source());
        }
        let su = CompiledGrants::compile(Grants {
            superuser: true,
            ..Default::default()
        })
        .unwrap();
        assert!(su.covers(&old) && !old.covers(&su));
    }

    #[test]
    fn nats_permissions_translate() {
        let d = device();
        let p = d.nats_permissions();
        assert_eq!(p.publish, vec!["devices.d1", "devices.d1.>"]);
        assert_eq!(
            p.subscribe,
            vec!["_INBOX.>", "devices.d1.cmd", "devices.d1.cmd.>"]
        );
        assert!(
            CompiledGrants::compile(Grants::default())
                .unwrap()
                .is_empty()
        );
    }
}
