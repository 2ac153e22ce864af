//! One store conformance suite, run against both backends: sled in a temporary directory and
//! NATS JetStream KV on a real nats-server (one per test, JetStream on, `sync_interval: always`
//! as the configurations we ship). Every operation the sidecar uses is here, with the races that
//! matter: of N threads spending one challenge, code, pending step or refresh token, claiming
//! one public key or role name, or deploying on one base, exactly one wins.
//!
//! Each test is a function of `&dyn Store` written once; `conformance!` instantiates it per
//! backend, so a behaviour cannot pass on one and be untested on the other.

use std::collections::BTreeMap;
use std::sync::Arc;

use broker_auth::identity::{IdentityType, KeyAlgorithm};
use sidecar::config::{NatsStoreArgs, StoreArgs, StoreKind};
use sidecar::store::*;
use test_support::NatsServer;

/// A backend and what keeps it alive; `reopen` drops the store and opens it again.
pub struct Backend {
    pub args: StoreArgs,
    _dir: tempfile::TempDir,
    _server: Option<NatsServer>,
}

impl Backend {
    fn sled() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        Backend {
            args: args(StoreKind::Sled, dir.path(), None),
            _dir: dir,
            _server: None,
        }
    }

    fn nats() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let server = NatsServer::start(&jetstream_conf(dir.path()));
        Backend {
            args: args(StoreKind::Nats, dir.path(), Some(server.url())),
            _dir: dir,
            _server: Some(server),
        }
    }

    pub fn open(&self) -> Arc<dyn Store> {
        sidecar::store::open(&self.args).unwrap()
    }
}

/// JetStream with every write synced before its acknowledgement (see the README).
pub fn jetstream_conf(dir: &std::path::Path) -> String {
    format!(
        "jetstream {{ store_dir: \"{}\", sync_interval: always }}\nmax_payload: 8MB\n",
        dir.join("js").display()
    )
}

fn args(kind: StoreKind, dir: &std::path::Path, url: Option<String>) -> StoreArgs {
    StoreArgs {
        kind,
        data_dir: dir.join("data"),
        key_encryption_key: None,
        nats: NatsStoreArgs {
            conn: callout::config::StoreNatsArgs {
                url,
                creds: None,
                user: None,
                password: None,
                prefix: "conformance".into(),
            },
            replicas: 1,
            timeout_ms: 5000,
        },
    }
}

macro_rules! conformance {
    ($($name:ident),+ $(,)?) => {
        mod sled {
            $(#[test] fn $name() { super::$name(&super::Backend::sled()) })+
        }
        mod nats {
            $(#[test] fn $name() { super::$name(&super::Backend::nats()) })+
        }
    };
}

conformance!(
    identities_unique_paged_and_durable,
    concurrent_registrations_of_one_key,
    hostile_ids_round_trip_without_collisions,
    challenges_and_pending_steps_are_single_use,
    signatures_are_remembered_once,
    announcements_replace_and_end,
    concurrent_announcements_leave_one_open,
    revocation_feed_is_ordered_and_paged,
    bans_keys_and_signing_keys,
    nats_accounts_and_users_create_or_return,
    tenancy_roles_unique_per_app,
    refresh_rotation_has_one_winner,
    oauth_clients_and_codes,
    policy_deploys_on_one_base_have_one_winner,
);

/// Run `f` on `n` threads at once; their results.
fn race<T: Send + 'static>(
    store: &Arc<dyn Store>,
    n: usize,
    f: impl Fn(&dyn Store, usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let barrier = Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (s, f, b) = (store.clone(), f.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                f(s.as_ref(), i)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn flush(s: &dyn Store) {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(s.flush())
        .unwrap();
}

fn ident(id: &str, key: &str) -> IdentityRecord {
    IdentityRecord {
        id: id.into(),
        kind: IdentityType::Device,
        key_algorithm: Some(KeyAlgorithm::Ed25519),
        public_key: Some(key.into()),
        upstream: None,
        name: None,
        tenant: None,
        scopes: vec![],
        groups: vec![],
        metadata: Default::default(),
        created_at: 1,
        disabled_at: None,
    }
}

fn identities_unique_paged_and_durable(b: &Backend) {
    {
        let s = b.open();
        for i in [3, 1, 2, 5, 4] {
            s.insert_identity(&ident(&format!("dev-{i}"), &format!("key+/{i}=")))
                .unwrap();
        }
        let taken = s.insert_identity(&ident("dev-9", "key+/1="));
        assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
        assert!(
            s.identity("dev-9").unwrap().is_none(),
            "nothing half-written"
        );
        let twin = s.insert_identity(&ident("dev-1", "other"));
        assert!(matches!(twin, Err(StoreError::Conflict(_))), "{twin:?}");
        assert!(
            s.identity_by_key("other").unwrap().is_none(),
            "a refused insert keeps no key"
        );
        assert!(
            s.insert_identity(&ident("dev-6", "other")).is_ok(),
            "the key is free again"
        );
        assert_eq!(s.identity_by_key("key+/2=").unwrap().unwrap().id, "dev-2");
        let mut upd = s.identity("dev-3").unwrap().unwrap();
        upd.disabled_at = Some(7);
        s.update_identity(&upd).unwrap();
        let page: Vec<String> = s
            .list_identities(Some("dev-2"), 2)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(page, ["dev-3", "dev-4"]);
        assert_eq!(s.list_identities(None, 100).unwrap().len(), 6);
        flush(s.as_ref());
    }
    let s = b.open();
    assert_eq!(
        s.identity_count().unwrap(),
        6,
        "acknowledged writes survive a reopen"
    );
    assert_eq!(s.identity("dev-3").unwrap().unwrap().disabled_at, Some(7));
}

fn concurrent_registrations_of_one_key(b: &Backend) {
    let s = b.open();
    let results = race(&s, 8, |s, i| {
        s.insert_identity(&ident(&format!("dev-{i}"), "one-key"))
    });
    let won: Vec<usize> = (0..8).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(
        won.len(),
        1,
        "exactly one registration of a key wins: {results:?}"
    );
    for (i, r) in results.iter().enumerate() {
        if r.is_err() {
            assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
            assert!(s.identity(&format!("dev-{i}")).unwrap().is_none());
        }
    }
    let owner = s.identity_by_key("one-key").unwrap().unwrap();
    assert_eq!(owner.id, format!("dev-{}", won[0]));
    assert_eq!(s.identity_count().unwrap(), 1);
}

fn hostile_ids_round_trip_without_collisions(b: &Backend) {
    let s = b.open();
    let ids = [
        "a.b", "a=2Eb", "a*", ">", "", " ", "é/ü", "a/b", "a_b", "A-b",
    ];
    for (n, id) in ids.iter().enumerate() {
        s.insert_identity(&ident(id, &format!("k{n}"))).unwrap();
    }
    for (n, id) in ids.iter().enumerate() {
        let got = s.identity(id).unwrap().unwrap();
        assert_eq!(
            got.public_key.as_deref(),
            Some(format!("k{n}").as_str()),
            "{id:?}"
        );
    }
    assert_eq!(s.identity_count().unwrap(), ids.len());
    // A family scan of user "u" must not return user "u.x"'s or "u1"'s families.
    for (user, fam) in [("u", "f1"), ("u.x", "f2"), ("u1", "f3")] {
        s.put_family(&family(user, fam)).unwrap();
    }
    let of_u: Vec<String> = s
        .families_of("u")
        .unwrap()
        .into_iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(of_u, ["f1"]);
}

fn family(user: &str, id: &str) -> FamilyRecord {
    FamilyRecord {
        id: id.into(),
        user_id: user.into(),
        created_at: 1,
        expires_at: 100,
        revoked_at: None,
        scopes: vec![],
        client_id: None,
    }
}

fn challenges_and_pending_steps_are_single_use(b: &Backend) {
    let s = b.open();
    let c = ChallengeRecord {
        public_key: "k".into(),
        expires_at: i64::MAX,
    };
    s.put_challenge("c-1", &c).unwrap();
    let got = race(&s, 8, |s, _| s.take_challenge("c-1").unwrap());
    assert_eq!(got.iter().filter(|g| g.is_some()).count(), 1, "{got:?}");
    assert_eq!(s.take_challenge("c-1").unwrap(), None);
    let pending = PendingRecord {
        expires_at: i64::MAX,
        step: PendingStep::Authorize(AuthorizeRequest {
            client_id: "cl".into(),
            redirect_uri: "https://x/cb".into(),
            state: "st".into(),
            code_challenge: "cc".into(),
            scopes: vec![],
            nonce: None,
            challenge: "ch".into(),
        }),
    };
    s.put_pending("p-1", &pending).unwrap();
    let got = race(&s, 8, |s, _| s.take_pending("p-1").unwrap());
    assert_eq!(got.iter().filter(|g| g.is_some()).count(), 1);
    // Pruning never forgets a record still in force.
    s.put_challenge("c-2", &c).unwrap();
    s.prune(1).unwrap();
    assert!(s.take_challenge("c-2").unwrap().is_some());
}

fn signatures_are_remembered_once(b: &Backend) {
    let s = b.open();
    let fresh = race(&s, 8, |s, _| {
        s.remember_signature(b"\x00sig\xff", 200).unwrap()
    });
    assert_eq!(fresh.iter().filter(|f| **f).count(), 1, "{fresh:?}");
    s.prune(100).unwrap();
    assert!(
        !s.remember_signature(b"\x00sig\xff", 200).unwrap(),
        "remembered until its time, prune or not"
    );
    assert!(s.remember_signature(b"\x00sig\xfe", 200).unwrap());
}

fn ann(id: &str, device: &str, at: i64) -> AnnouncementRecord {
    AnnouncementRecord {
        id: id.into(),
        device: device.into(),
        created_at: at,
        expires_at: at + 100,
        ended_at: None,
    }
}

fn announcements_replace_and_end(b: &Backend) {
    let s = b.open();
    assert!(
        s.open_announcement(&ann("ann-1", "dev", 10))
            .unwrap()
            .is_none()
    );
    let prev = s
        .open_announcement(&ann("ann-2", "dev", 20))
        .unwrap()
        .unwrap();
    assert_eq!(
        (prev.id.as_str(), prev.ended_at),
        ("ann-1", None),
        "returned as it was"
    );
    assert_eq!(s.announcement("ann-1").unwrap().unwrap().ended_at, Some(20));
    assert!(
        s.end_announcement("dev", "ann-1", 30).unwrap().is_none(),
        "not current"
    );
    let ended = s.end_announcement("dev", "ann-2", 30).unwrap().unwrap();
    assert_eq!(ended.ended_at, Some(30));
    assert!(
        s.end_announcement("dev", "ann-2", 31).unwrap().is_none(),
        "once"
    );
    assert!(
        s.open_announcement(&ann("ann-3", "dev", 40))
            .unwrap()
            .is_none()
    );
}

fn concurrent_announcements_leave_one_open(b: &Backend) {
    let s = b.open();
    s.open_announcement(&ann("ann-0", "dev", 1)).unwrap();
    race(&s, 6, |s, i| {
        s.open_announcement(&ann(&format!("ann-{}", i + 1), "dev", 10))
            .unwrap()
    });
    let open: Vec<String> = (0..=6)
        .map(|i| s.announcement(&format!("ann-{i}")).unwrap().unwrap())
        .filter(|a| a.ended_at.is_none())
        .map(|a| a.id)
        .collect();
    assert_eq!(open.len(), 1, "one device, one open announcement: {open:?}");
    assert!(
        s.end_announcement("dev", &open[0], 20).unwrap().is_some(),
        "and it is current"
    );
}

fn revocation_feed_is_ordered_and_paged(b: &Backend) {
    let s = b.open();
    assert!(s.revocations_since(0, 10).unwrap().is_empty());
    let seqs: Vec<u64> = (0..5)
        .map(|i| {
            s.append_revocation(&RevocationRecord {
                kind: RevocationKind::Session,
                id: format!("ses-{i}"),
                at: i,
                until: 100,
                attrs: None,
            })
            .unwrap()
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "monotonic: {seqs:?}");
    let all = s.revocations_since(0, 100).unwrap();
    assert_eq!(all.iter().map(|(q, _)| *q).collect::<Vec<_>>(), seqs);
    let page = s.revocations_since(seqs[1], 2).unwrap();
    let ids: Vec<&str> = page.iter().map(|(_, r)| r.id.as_str()).collect();
    assert_eq!(ids, ["ses-2", "ses-3"]);
    assert!(s.revocations_since(seqs[4], 10).unwrap().is_empty());
}

fn bans_keys_and_signing_keys(b: &Backend) {
    let s = b.open();
    for ip in ["10.0.0.1", "::1"] {
        s.put_ban(&BanRecord {
            ip: ip.into(),
            since: 1,
            reason: "test".into(),
        })
        .unwrap();
    }
    assert!(s.remove_ban("::1").unwrap());
    assert!(!s.remove_ban("::1").unwrap());
    assert_eq!(s.bans().unwrap().len(), 1);
    let key = ApiKeyRecord {
        id: "ak-1".into(),
        name: "n".into(),
        app_id: None,
        scopes: vec!["admin".into()],
        identity_types: vec![],
        secret_hash: "h".into(),
        created_at: 1,
        expires_at: 2,
        revoked_at: None,
    };
    s.put_api_key(&key).unwrap();
    assert_eq!(s.api_key("ak-1").unwrap().unwrap().scopes, ["admin"]);
    assert_eq!(s.api_keys().unwrap().len(), 1);
    let sk = |kid: &str| SigningKeyRecord {
        kid: kid.into(),
        alg: broker_auth::token::TokenAlg::EdDSA,
        created_at: 1,
        retired_at: None,
        nonce: "n".into(),
        ciphertext: "c".into(),
        public_jwk: Some(serde_json::json!({"kid": kid})),
    };
    s.put_signing_key(&sk("k1")).unwrap();
    s.put_signing_key(&sk("k2")).unwrap();
    s.remove_signing_key("k1").unwrap();
    let kids: Vec<String> = s
        .signing_keys()
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["k2"]);
}

fn sealed() -> SealedSeed {
    SealedSeed {
        nonce: "n".into(),
        ciphertext: "c".into(),
    }
}

fn nats_accounts_and_users_create_or_return(b: &Backend) {
    let s = b.open();
    let stored = race(&s, 6, |s, i| {
        s.create_nats_account(&NatsAccountRecord {
            id: "tenant-a".into(),
            name: "a".into(),
            public_key: format!("AKEY{i}"),
            jwt: "j".into(),
            seed: sealed(),
            created_at: 1,
        })
        .unwrap()
    });
    let winner = stored[0].public_key.clone();
    assert!(
        stored.iter().all(|a| a.public_key == winner),
        "one account for all"
    );
    assert_eq!(
        s.nats_account_by_key(&winner).unwrap().unwrap().id,
        "tenant-a"
    );
    for i in 0..6 {
        let k = format!("AKEY{i}");
        if k != winner {
            assert!(
                s.nats_account_by_key(&k).unwrap().is_none(),
                "a loser's key resolves nothing"
            );
        }
    }
    let mut acct = s.nats_account("tenant-a").unwrap().unwrap();
    acct.jwt = "j2".into();
    s.update_nats_account(&acct).unwrap();
    assert_eq!(s.nats_accounts().unwrap()[0].jwt, "j2");
    let user = |pk: &str| NatsUserRecord {
        id: "u-1".into(),
        account_id: "tenant-a".into(),
        public_key: pk.into(),
        jwt: "j".into(),
        seed: sealed(),
        created_at: 1,
        revoked_at: None,
    };
    assert_eq!(s.create_nats_user(&user("U1")).unwrap().public_key, "U1");
    assert_eq!(s.create_nats_user(&user("U2")).unwrap().public_key, "U1");
    let mut u = s.nats_user("u-1").unwrap().unwrap();
    u.revoked_at = Some(5);
    s.update_nats_user(&u).unwrap();
    assert_eq!(s.nats_users().unwrap()[0].revoked_at, Some(5));
}

fn tenancy_roles_unique_per_app(b: &Backend) {
    let s = b.open();
    for id in ["a", "ab"] {
        s.put_app(&AppRecord {
            id: id.into(),
            name: id.into(),
            description: None,
            created_at: 1,
        })
        .unwrap();
    }
    assert_eq!(s.apps().unwrap().len(), 2);
    let role = |app: &str, id: String| RoleRecord {
        id,
        app_id: app.into(),
        name: "operator".into(),
        description: None,
        created_at: 1,
    };
    let made = race(&s, 6, move |s, i| {
        s.create_role(&role("a", format!("r-{i}"))).is_ok()
    });
    assert_eq!(
        made.iter().filter(|m| **m).count(),
        1,
        "one role of a name: {made:?}"
    );
    s.create_role(&role("ab", "r-x".into())).unwrap();
    assert_eq!(
        s.roles("a").unwrap().len(),
        1,
        "app ab's roles are not app a's"
    );
    s.put_user_roles(&UserRolesRecord {
        app_id: "a".into(),
        user_id: "u".into(),
        role_ids: vec!["r-0".into()],
    })
    .unwrap();
    assert_eq!(s.user_roles("a", "u").unwrap().unwrap().role_ids, ["r-0"]);
    assert!(s.user_roles("ab", "u").unwrap().is_none());
    assert_eq!(s.app("ab").unwrap().unwrap().name, "ab");
}

fn refresh_rotation_has_one_winner(b: &Backend) {
    let s = b.open();
    let rec = RefreshRecord {
        id: "rt-1".into(),
        family: "ses-1".into(),
        user_id: "u".into(),
        secret_hash: "h".into(),
        created_at: 1,
        used_at: None,
    };
    s.put_refresh(&rec).unwrap();
    s.put_family(&family("u", "ses-1")).unwrap();
    let read = s.refresh_token("rt-1").unwrap().unwrap();
    let won = race(&s, 8, move |s, i| {
        s.use_refresh(&read, 10 + i as i64).unwrap()
    });
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    assert!(!s.use_refresh(&rec, 99).unwrap(), "a stale read loses");
    assert!(s.refresh_token("rt-1").unwrap().unwrap().used_at.is_some());
    let mut fam = s.family("u", "ses-1").unwrap().unwrap();
    fam.revoked_at = Some(11);
    s.put_family(&fam).unwrap();
    assert_eq!(s.families_of("u").unwrap()[0].revoked_at, Some(11));
}

fn oauth_clients_and_codes(b: &Backend) {
    let s = b.open();
    let client = OAuthClientRecord {
        id: "grafana".into(),
        name: "g".into(),
        redirect_uris: vec!["https://g/cb".into()],
        scopes: vec![],
        app_id: None,
        secret_hash: "h".into(),
        created_at: 1,
    };
    s.put_oauth_client(&client).unwrap();
    assert_eq!(s.oauth_client("grafana").unwrap().unwrap().name, "g");
    assert_eq!(s.oauth_clients().unwrap().len(), 1);
    assert!(s.delete_oauth_client("grafana").unwrap());
    assert!(!s.delete_oauth_client("grafana").unwrap());
    let code = AuthCodeRecord {
        client_id: "grafana".into(),
        redirect_uri: "https://g/cb".into(),
        code_challenge: "cc".into(),
        identity_id: "u".into(),
        scopes: vec![],
        nonce: None,
        expires_at: 100,
        used_at: None,
        family: None,
    };
    s.put_code("digest-1", &code).unwrap();
    let read = s.code("digest-1").unwrap().unwrap();
    let won = race(&s, 8, move |s, i| {
        let used = AuthCodeRecord {
            used_at: Some(i as i64),
            family: Some(format!("ses-{i}")),
            ..read.clone()
        };
        s.use_code("digest-1", &read, &used).unwrap()
    });
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    assert!(s.code("digest-1").unwrap().unwrap().used_at.is_some());
}

fn policy(message: &str) -> PolicyVersionRecord {
    PolicyVersionRecord {
        version: 0,
        hash: format!("h-{message}"),
        created_at: 1,
        author: "test".into(),
        source: PolicyOrigin::Api,
        message: message.into(),
        files: BTreeMap::from([("a.rego".into(), "package a\n".into())]),
    }
}

fn policy_deploys_on_one_base_have_one_winner(b: &Backend) {
    let s = b.open();
    assert!(s.live_policy().unwrap().is_none());
    assert_eq!(s.deploy_policy(&policy("first"), None).unwrap().version, 1);
    let stale = s.deploy_policy(&policy("stale"), None);
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let won = race(&s, 6, |s, i| {
        s.deploy_policy(&policy(&format!("e{i}")), Some(1)).ok()
    });
    let winners: Vec<_> = won.into_iter().flatten().collect();
    assert_eq!(winners.len(), 1, "two editors on one base: one wins");
    assert_eq!(winners[0].version, 2);
    let live = s.live_policy().unwrap().unwrap();
    assert_eq!((live.version, &live.message), (2, &winners[0].message));
    assert_eq!(
        s.deploy_policy(&policy("third"), Some(2)).unwrap().version,
        3
    );
    let versions: Vec<u64> = s
        .policy_versions(None, 10)
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, [3, 2, 1], "newest first");
    let older: Vec<u64> = s
        .policy_versions(Some(3), 1)
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(older, [2]);
    assert_eq!(s.policy_version(1).unwrap().unwrap().message, "first");
    assert!(s.policy_version(4).unwrap().is_none());
}
