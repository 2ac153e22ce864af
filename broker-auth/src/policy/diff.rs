//! The access diff: who gains and who loses what between two policy sets.
//!
//! Exact at the level of grants, not sampled topics: each principal's grants are computed under
//! both sets and their pattern sets compared (MQTT publish and subscribe, the NATS permissions
//! derived from them, superuser, client ids). A principal whose grants the policy cannot compute
//! is denied at connect, so under that set it has nothing, and the error is reported beside it.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;

use super::PolicySet;
use crate::grants::CompiledGrants;
use crate::principal::Principal;

/// Patterns one side has and the other has not.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PatternChange {
    /// Granted under `to`, not under `from` (sorted).
    pub added: Vec<String>,
    /// Granted under `from`, not under `to` (sorted).
    pub removed: Vec<String>,
}

impl PatternChange {
    fn of(from: &[String], to: &[String]) -> Self {
        let from: BTreeSet<&String> = from.iter().collect();
        let to: BTreeSet<&String> = to.iter().collect();
        PatternChange {
            added: to.difference(&from).map(|s| (*s).clone()).collect(),
            removed: from.difference(&to).map(|s| (*s).clone()).collect(),
        }
    }

    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// A value under `from` and under `to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change<T> {
    /// Before.
    pub from: T,
    /// After.
    pub to: T,
}

/// How one principal's access changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PrincipalDiff {
    /// Who.
    pub principal: Principal,
    /// MQTT publish patterns.
    pub publish: PatternChange,
    /// MQTT subscribe patterns.
    pub subscribe: PatternChange,
    /// NATS publish subjects (the user JWT's `pub`).
    pub nats_publish: PatternChange,
    /// NATS subscribe subjects (the user JWT's `sub`).
    pub nats_subscribe: PatternChange,
    /// Superuser before and after.
    pub superuser: Change<bool>,
    /// Whether NATS requests may be answered (`resp`), when it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_allow_responses: Option<Change<bool>>,
    /// Allowed client ids before and after (`None`: any), when they differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ids: Option<Change<Option<Vec<String>>>>,
    /// Policy errors computing the grants (that side grants nothing: the connect is refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Change<Option<String>>>,
}

fn grants_or_nothing(set: &PolicySet, p: &Principal) -> (Arc<CompiledGrants>, Option<String>) {
    match set.grants_cached(p) {
        Ok(g) => (g, None),
        Err(e) => (Arc::new(CompiledGrants::nothing()), Some(e.to_string())),
    }
}

/// The diff of one principal, `None` when its access is the same under both sets.
pub fn principal_diff(from: &PolicySet, to: &PolicySet, p: &Principal) -> Option<PrincipalDiff> {
    let (a, ea) = grants_or_nothing(from, p);
    let (b, eb) = grants_or_nothing(to, p);
    let (sa, sb) = (a.source(), b.source());
    let (na, nb) = (a.nats_permissions(), b.nats_permissions());
    let d = PrincipalDiff {
        principal: p.clone(),
        publish: PatternChange::of(&sa.publish, &sb.publish),
        subscribe: PatternChange::of(&sa.subscribe, &sb.subscribe),
        nats_publish: PatternChange::of(&na.publish, &nb.publish),
        nats_subscribe: PatternChange::of(&na.subscribe, &nb.subscribe),
        superuser: Change {
            from: a.superuser(),
            to: b.superuser(),
        },
        nats_allow_responses: (na.allow_responses != nb.allow_responses).then_some(Change {
            from: na.allow_responses,
            to: nb.allow_responses,
        }),
        client_ids: (sa.client_ids != sb.client_ids).then(|| Change {
            from: sa.client_ids.clone(),
            to: sb.client_ids.clone(),
        }),
        errors: (ea.is_some() || eb.is_some()).then_some(Change { from: ea, to: eb }),
    };
    let same = d.publish.is_empty()
        && d.subscribe.is_empty()
        && d.nats_publish.is_empty()
        && d.nats_subscribe.is_empty()
        && !d.superuser_changed()
        && d.client_ids.is_none()
        && d.nats_allow_responses.is_none()
        && d.errors.is_none();
    (!same).then_some(d)
}

impl PrincipalDiff {
    fn superuser_changed(&self) -> bool {
        self.superuser.from != self.superuser.to
    }
}

/// Every principal whose access differs between `from` and `to`, in the order given.
pub fn access_diff<'a>(
    from: &PolicySet,
    to: &PolicySet,
    principals: impl IntoIterator<Item = &'a Principal>,
) -> Vec<PrincipalDiff> {
    principals
        .into_iter()
        .filter_map(|p| principal_diff(from, to, p))
        .collect()
}

/// Roles the shipped policy knows.
pub const SHIPPED_ROLES: &[&str] = &["reader", "writer", "sensor", "backend", "control-admin"];

/// One principal of every identity type, without a role and with each shipped role, in tenant
/// `tenant-1`; gateways act for `dev-DEVICE1`. What `policy diff` examines when it is given
/// no principals.
pub fn synthetic_principals() -> Vec<Principal> {
    let mut out = Vec::new();
    for kind in crate::identity::ALL_TYPES {
        for role in std::iter::once("").chain(SHIPPED_ROLES.iter().copied()) {
            let gateway = kind == crate::identity::IdentityType::Gateway;
            out.push(Principal {
                id: format!("{}EXAMPLE1", kind.id_prefix()),
                kind,
                tenant: Some("tenant-1".into()),
                roles: if role.is_empty() {
                    vec![]
                } else {
                    vec![role.to_owned()]
                },
                scopes: vec![],
                groups: vec![],
                devices: if gateway {
                    vec!["dev-DEVICE1".into()]
                } else {
                    vec![]
                },
                client_id: None,
                protocol: crate::principal::Protocol::Mqtt,
            });
        }
    }
    out
}
