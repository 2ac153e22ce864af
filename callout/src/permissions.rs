//! Grants → the user JWT's `pub`/`sub`/`resp`.

use broker_auth::grants::CompiledGrants;
use broker_auth::nats_jwt::{Permission, Permissions, ResponsePermission};

/// How long a client may take to answer a request it received (Go `time.Duration`, nanoseconds).
const RESPONSE_TTL_NANOS: i64 = 60_000_000_000;

/// The `pub`/`sub`/`resp` of a user JWT for these grants. A superuser gets `>` both ways (as it
/// bypasses ACLs on MQTT); otherwise MQTT patterns are translated and NATS-only subjects added.
/// Nothing granted means empty allow lists, which nats-server reads as "deny all".
pub fn permissions_for(grants: &CompiledGrants) -> Permissions {
    let p = grants.nats_permissions();
    Permissions {
        publish: Permission {
            allow: p.publish.clone(),
            deny: vec![],
        },
        subscribe: Permission {
            allow: p.subscribe.clone(),
            deny: vec![],
        },
        resp: p.allow_responses.then_some(ResponsePermission {
            max: 1,
            ttl: RESPONSE_TTL_NANOS,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker_auth::grants::{Grants, NatsGrants};

    #[test]
    fn device_grants_become_nats_permissions() {
        let g = CompiledGrants::compile(Grants {
            publish: vec!["devices/d1/#".into()],
            subscribe: vec!["devices/d1/cmd/#".into()],
            nats: NatsGrants {
                subscribe: vec!["_INBOX.>".into()],
                allow_responses: true,
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap();
        let p = permissions_for(&g);
        assert_eq!(p.publish.allow, vec!["devices.d1", "devices.d1.>"]);
        assert_eq!(
            p.subscribe.allow,
            vec!["_INBOX.>", "devices.d1.cmd", "devices.d1.cmd.>"]
        );
        assert_eq!(p.resp.unwrap().max, 1);
    }

    #[test]
    fn superuser_gets_everything_and_nobody_gets_nothing() {
        let su = CompiledGrants::compile(Grants {
            superuser: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(permissions_for(&su).publish.allow, vec![">"]);
        let none = permissions_for(&CompiledGrants::compile(Grants::default()).unwrap());
        assert!(
            none.publish.allow.is_empty() && none.subscribe.allow.is_empty() && none.resp.is_none()
        );
    }
}
