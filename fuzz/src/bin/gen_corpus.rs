//! Writes the seed corpus: `fuzz/corpus/<target>/seed-*`, deterministic (fixed keys, fixed
//! nonces, the fixtures' clock), so running it again changes nothing. Files not named `seed-*`
//! (what `run.sh --merge` adds) are left alone; stale `seed-*` files are removed.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --no-default-features --features gen --bin gen-corpus [DIR]`

// A seed that cannot be built must stop the generator loudly.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use broker_auth::nats_jwt::claims::{ClientInfo, ConnectOpts, ServerId};
use broker_auth::nats_jwt::{self, AuthorizationRequest, NatsClaims};
use broker_auth::token::{KeySet, TokenAlg, TokenKey};
use broker_auth_fuzz::{
    APP, AUDIENCE, HS_KID, ISSUER, NOW, REVOKED_SID, REVOKED_SUB, Signer, nats, tokens,
};
use ed25519_dalek::Signer as _;
use serde_json::{Value, json};

type Seeds = Vec<(String, Vec<u8>)>;

fn add(seeds: &mut Seeds, name: &str, bytes: impl Into<Vec<u8>>) {
    seeds.push((name.to_owned(), bytes.into()));
}

fn claims(sub: &str) -> Value {
    json!({
        "iss": ISSUER, "sub": sub, "aud": AUDIENCE, "iat": NOW, "nbf": NOW, "exp": NOW + 3600,
        "jti": "seed-jti", "token_use": "access",
    })
}

fn with(mut v: Value, extra: Value) -> Value {
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    v
}

/// `s` + signer + clock + `header\npayload`: an empty header line is the product's header.
fn signed(signer: usize, clock: u8, header: &str, payload: &Value) -> Vec<u8> {
    let mut out = vec![b's', b'0' + signer as u8, b'0' + clock];
    out.extend_from_slice(header.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload.to_string().as_bytes());
    out
}

fn token_verify() -> Seeds {
    let mut s = Seeds::new();
    let t = tokens();
    let device = claims("dev-SEED0001");
    for (i, signer) in Signer::ALL.iter().enumerate() {
        let payload = if *signer == Signer::AppHs256 {
            with(claims("usr-SEED0002"), json!({"tenant": APP}))
        } else {
            device.clone()
        };
        add(
            &mut s,
            &format!("signed-{signer:?}"),
            signed(i, 0, "", &payload),
        );
    }
    let ed = 0;
    let variants = [
        (
            "refresh",
            with(device.clone(), json!({"token_use": "refresh"})),
        ),
        (
            "aud-many",
            with(device.clone(), json!({"aud": ["other", AUDIENCE]})),
        ),
        ("wrong-aud", with(device.clone(), json!({"aud": "other"}))),
        (
            "wrong-iss",
            with(device.clone(), json!({"iss": "https://evil.test"})),
        ),
        ("expired", with(device.clone(), json!({"exp": NOW - 3600}))),
        ("not-yet", with(device.clone(), json!({"nbf": NOW + 3600}))),
        (
            "revoked-sid",
            with(device.clone(), json!({"sid": REVOKED_SID})),
        ),
        (
            "revoked-sub",
            with(claims(REVOKED_SUB), json!({"iat": NOW - 10})),
        ),
        ("empty-sub", claims("")),
        (
            "full-claims",
            with(
                claims("gw-SEED0003"),
                json!({"idt": "gateway", "tenant": "t1", "app_id": "t1", "roles": ["writer"],
                       "scopes": ["mqtt.admin"], "groups": ["admin"], "devices": ["dev-A", "dev-B"],
                       "sid": "sid-1"}),
            ),
        ),
        (
            "hostile-names",
            with(
                claims("dev-a/+/#"),
                json!({"tenant": "t\"1\u{0}", "roles": ["a b"]}),
            ),
        ),
        (
            "missing-exp",
            json!({"iss": ISSUER, "sub": "dev-X", "aud": AUDIENCE, "iat": NOW, "nbf": NOW, "jti": "j", "token_use": "access"}),
        ),
        (
            "exp-huge",
            with(device.clone(), json!({"exp": i64::MAX, "nbf": i64::MIN})),
        ),
    ];
    for (name, payload) in variants {
        add(
            &mut s,
            &format!("signed-{name}"),
            signed(ed, 0, "", &payload),
        );
    }
    for clock in 1..8u8 {
        add(
            &mut s,
            &format!("clock-{clock}"),
            signed(ed, clock, "", &device),
        );
    }
    let kid = t.kid(Signer::Ed25519);
    let headers = [
        (
            "crit",
            json!({"alg": "EdDSA", "kid": kid, "typ": "JWT", "crit": ["exp"]}),
        ),
        (
            "jku",
            json!({"alg": "EdDSA", "kid": kid, "jku": "https://evil.test/jwks"}),
        ),
        ("no-kid", json!({"alg": "EdDSA", "typ": "JWT"})),
        ("alg-none", json!({"alg": "none", "kid": kid})),
        ("alg-hs-on-ed-kid", json!({"alg": "HS256", "kid": kid})),
        (
            "typ-other",
            json!({"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}),
        ),
        ("kid-hs", json!({"alg": "HS256", "kid": HS_KID})),
    ];
    for (name, h) in headers {
        add(
            &mut s,
            &format!("header-{name}"),
            signed(ed, 0, &h.to_string(), &device),
        );
    }
    // Tokens as the product signs them, given raw.
    let mut c: broker_auth::token::Claims =
        serde_json::from_value(with(device.clone(), json!({"idt": "device"}))).expect("claims");
    let product = t.keys.sign(&c).expect("product token");
    add(
        &mut s,
        "raw-product",
        [b"r".as_slice(), product.as_bytes()].concat(),
    );
    c.token_use = broker_auth::token::TokenUse::Refresh;
    let refresh = t.keys.sign(&c).expect("product refresh token");
    add(
        &mut s,
        "raw-product-refresh",
        [b"r".as_slice(), refresh.as_bytes()].concat(),
    );
    let mut parts: Vec<&str> = product.split('.').collect();
    parts[2] = "";
    add(&mut s, "raw-no-signature", format!("r{}", parts.join(".")));
    for raw in ["a.b.c", "....", "eyJ.eyJ.sig", ""] {
        add(&mut s, &format!("raw-{}", raw.len()), format!("r{raw}"));
    }
    // JWKS documents.
    add(&mut s, "jwks-product", format!("j{}", t.keys.jwks()));
    let es = TokenKey::from_pkcs8(
        TokenAlg::EdDSA,
        broker_auth::secret::SecretBytes::new(
            ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(
                &ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
            )
            .expect("pkcs8")
            .as_bytes()
            .to_vec(),
        ),
    )
    .expect("key");
    add(
        &mut s,
        "jwks-one",
        format!("j{}", KeySet::new(vec![es.into()]).jwks()),
    );
    add(
        &mut s,
        "jwks-bad",
        r#"j{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"k"},{"kty":"RSA"}]}"#,
    );
    s
}

fn auth_request(
    user: &str,
    xkey: Option<String>,
    jwt: Option<String>,
) -> NatsClaims<AuthorizationRequest> {
    let n = nats();
    let mut r = NatsClaims::<AuthorizationRequest>::new(user.to_owned());
    r.aud = "nats-authorization-request".into();
    r.nats.server_id = ServerId {
        name: "seed-server".into(),
        id: n.server.public_key(),
        xkey,
        ..Default::default()
    };
    r.nats.user_nkey = user.to_owned();
    r.nats.client_info = ClientInfo {
        id: Some(7),
        host: Some("127.0.0.1".into()),
        kind: Some("Client".into()),
        client_type: Some("mqtt".into()),
        mqtt_id: Some("dev-SEED0001".into()),
        ..Default::default()
    };
    r.nats.connect_opts = ConnectOpts {
        jwt,
        name: Some("seed".into()),
        lang: Some("rust".into()),
        ..Default::default()
    };
    r
}

fn nats_authz_request() -> Seeds {
    let mut s = Seeds::new();
    let n = nats();
    let user =
        nkeys::KeyPair::new_from_raw(nkeys::KeyPairType::User, [0x71; 32]).expect("user key");
    let token = tokens().keys.sign(
        &serde_json::from_value(with(claims("dev-SEED0001"), json!({"idt": "device"})))
            .expect("claims"),
    );
    let token = token.expect("token");
    let mut plain = auth_request(&user.public_key(), None, Some(token.clone()));
    let jwt = nats_jwt::encode(&mut plain, &n.server, NOW).expect("request");
    add(&mut s, "raw-request", format!("r{jwt}"));
    let mut sealed_req = auth_request(
        &user.public_key(),
        Some(n.server_xkey.public_key()),
        Some(token),
    );
    let sealed_jwt = nats_jwt::encode(&mut sealed_req, &n.server, NOW).expect("request");
    add(&mut s, "raw-request-xkey", format!("r{sealed_jwt}"));
    let mut expiring = auth_request(&user.public_key(), None, None);
    expiring.exp = NOW + 2;
    expiring.nbf = NOW - 2;
    let expiring = nats_jwt::encode(&mut expiring, &n.server, NOW).expect("request");
    add(&mut s, "raw-request-exp", format!("r{expiring}"));
    // Other claim types through the same codec.
    let mut u = NatsClaims::<nats_jwt::User>::new(user.public_key());
    let user_jwt = nats_jwt::encode(&mut u, &n.account, NOW).expect("user jwt");
    add(&mut s, "raw-user-jwt", format!("r{user_jwt}"));
    let mut a = NatsClaims::<nats_jwt::Account>::new(n.account.public_key());
    let account_jwt = nats_jwt::encode(&mut a, &n.operator, NOW).expect("account jwt");
    add(&mut s, "raw-account-jwt", format!("r{account_jwt}"));
    // Signed here around a chosen payload.
    let payload = |jwt: &str| {
        let p = jwt.split('.').nth(1).expect("payload");
        broker_auth::b64::url_decode_strict("p", p).expect("b64")
    };
    let body = payload(&jwt);
    add(&mut s, "signed-iss", [b"s1\n".as_slice(), &body].concat());
    add(&mut s, "signed-as-is", [b"s0\n".as_slice(), &body].concat());
    for (i, clock) in [(3u8, "zero"), (5, "min"), (7, "max")] {
        add(
            &mut s,
            &format!("signed-clock-{clock}"),
            [&[b's', i, b'\n'][..], &body].concat(),
        );
    }
    add(
        &mut s,
        "signed-header",
        [
            br#"s1{"typ":"JWT","alg":"ed25519"}"#.as_slice(),
            b"\n",
            &body,
        ]
        .concat(),
    );
    add(
        &mut s,
        "signed-header-unknown",
        [
            br#"s1{"typ":"JWT","alg":"ed25519-nkey","x":1}"#.as_slice(),
            b"\n",
            &body,
        ]
        .concat(),
    );
    add(&mut s, "signed-empty", b"s1\n{}".to_vec());
    add(
        &mut s,
        "signed-type",
        br#"s1
{"sub":"UAAA","nats":{"type":"user","version":2}}"#
            .to_vec(),
    );
    // Sealed by the server's curve key, as an xkey request arrives.
    let nonce = [0x5a; 24];
    add(
        &mut s,
        "sealed-request",
        [b"x".as_slice(), &nonce, sealed_jwt.as_bytes()].concat(),
    );
    add(
        &mut s,
        "sealed-short",
        [b"x".as_slice(), &nonce, b"hello"].concat(),
    );
    let sealed = n.seal_to_us(sealed_jwt.as_bytes(), nonce);
    for choice in 0..5u8 {
        add(
            &mut s,
            &format!("open-{choice}"),
            [&[b'o', choice][..], &sealed].concat(),
        );
    }
    add(&mut s, "open-garbage", b"o0xkv1AAAA".to_vec());
    s
}

/// One seed per line of `table`: `name|field|field|...`, the fields joined by newlines (the
/// targets split their input at newlines). `\n` in a field is a newline inside it.
fn table(table: &str) -> Seeds {
    table
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (name, fields) = l.split_once('|').unwrap_or((l, ""));
            let text = fields.split('|').collect::<Vec<_>>().join("\n");
            (name.to_owned(), text.replace("\\n", "\n").into_bytes())
        })
        .collect()
}

/// pattern | filter | topic
fn mqtt_topic() -> Seeds {
    table(
        "device|devices/dev-A/#|devices/dev-A/cmd/+|devices/dev-A/cmd/reboot
        device-parent|devices/dev-A/#|devices/dev-A|devices/dev-A
        tenant|tenants/t1/#|tenants/t1/+/x|tenants/t1/a/x
        rxc|rxc/+/+/cmd|rxc/t1/s1/cmd|rxc/t1/s1/cmd
        rxc-status|rxc/+/+/status|rxc/+/s1/status|rxc/t2/s1/status
        hash|#|+/#|a/b/c
        plus|+|+|a
        plus-hash|+/#|/#|/a
        dollar|#|$SYS/#|$SYS/broker/load
        dollar-explicit|$SYS/#|$SYS/+|$SYS/x
        shared|devices/+/cmd/#|$share/g/devices/dev-A/cmd/#|$share/g/devices/dev-A/cmd/x
        shared-bad|a/#|$share/g|$share//a
        shared-plus|+/+/#|$share/+/a|$share/g/a/b
        empty-levels|/+/|//|a//b
        slash|/|/|/
        bad-filters|a/#/b|a+b/c|a/+x
        nul|a/\u{0}|a/+|a/\u{0}b
        unicode|ü/+/#|ü/ß/#|ü/ß/€
        cover-parent|x/+/#|x/#|x
        cover-top|+/#|#|a
        cover-leading|/+/#|/#|/",
    )
}

/// MQTT pattern | MQTT topic | NATS pattern | NATS pattern | NATS subject
fn nats_subject() -> Seeds {
    table(
        "device|devices/+/cmd/#|devices/dev-A/cmd/x|devices.*.cmd.>|devices.dev-A.cmd.>|devices.dev-A.cmd.x
        tenant|tenants/t1/#|tenants/t1|tenants.t1.>|tenants.t1|tenants.t1.a
        js-api|rxc/+/+/cmd|rxc/t1/s1/cmd|$JS.API.>|$JS.API.CONSUMER.MSG.NEXT.RXC_CMD.c|$JS.API.CONSUMER.INFO.RXC_CMD.c
        inbox|#|a|_INBOX.>|_INBOX.abc.*|_INBOX.abc.def
        star|+|x|*|*.*|a.b
        gt-only|#|a/b|>|>|a
        bad-subjects|a/#|a.b/c|a..b|a.>.b|.a
        dots-in-mqtt|a.b/+|a.b/c|a.b.*|a b|a.b.c
        wide-narrow|a/+/c|a/b/c|a.*.c|a.b.c|a.b.c
        dollar|$SYS/#|$SYS/x|$SYS.>|$SYS.x|$SYS.x
        empty-level|a//b|a//b|a.*|a.b.>|a.b.c.d
        space|a b/#|a b/c|a.*.>|a.*|a.c
        unicode|ü/#|ü/ß|ü.>|ü.ß|ü.ß
        js-ack|#|a|$JS.ACK.RXC_CMD.c.>|$JS.ACK.RXC_CMD.c.1.2|$JS.ACK.RXC_CMD.c.1.2.3",
    )
}

/// control | id | tenant | app_id | roles | scopes | groups | devices | client_id | clientid |
/// topic (see the target's docs: control is type, protocol, action digits, then flags).
fn policy_input() -> Seeds {
    let mut s = table(
        r#"device-publish|500|dev-A1|||||||c1|c1|devices/dev-A1/status
        device-subscribe-cmd|501|dev-A1||||||||c1|devices/dev-A1/cmd/#
        device-shared|501|dev-A1||||||||c1|$share/g/devices/dev-A1/cmd/+
        device-read|502|dev-A1||||||||c1|devices/dev-A1/cmd/x
        device-other|500|dev-A1||||||||c1|devices/dev-B2/status
        gateway|410|gw-G1||||||dev-X1,dev-X2||gw|devices/dev-X2/status
        gateway-nats|411|gw-G1||||||dev-X1||gw|devices/dev-X1/cmd/#
        user-writer|200|usr-U1|t1||writer|||||u|tenants/t1/a/b
        user-reader|201|usr-U1|t1||reader|||||u|tenants/t1/#
        user-reader-publish|200|usr-U1|t1||reader|||||u|tenants/t1/x
        developer-http|320|dvl-D1|t2||writer,reader|||||d|tenants/t2/x
        sensor|700|svc-S1|t1||sensor|||||s|rxc/t1/svc-S1/status
        backend|610|int-B1|||backend|||||b|rxc/t9/s1/cmd
        backend-sub|611|int-B1|||backend|||||b|rxc/+/+/status
        control-admin|010|root-R1|||control-admin|||||r|$SYS/x
        superuser-scope|100|adm-A1||||mqtt.admin||||a|anything/at/all
        superuser-group|201|usr-U2|||||admin|||a|#
        superuser-bad-filter|501|dev-A1|||||mqtt.admin|||a|a/#/b
        invalid-topic|500|dev-A1||||||||c|devices/dev-A1/+
        multiline-topic|500|dev-A1||||||||c|devices/dev-A1/a\nb
        claims-device|800c|dev-C1|||||||mqtt-client|c|devices/dev-C1/x
        claims-app-id|200c|usr-C2||t3|writer|||||c|tenants/t3/x
        claims-unknown-type|800c|nobody||||||||c|x
        claims-hostile|500c|dev-a/#|t/+||a b|||||c|x
        hostile-quotes|500|dev-"q"|\"||"|'|`||"}|"\|a/"/b
        hostile-pct|500p|dev-A1|t%00||r%2Cs||||c%0Ad|%00%0A%22|a/%00/b%0A%FF
        hostile-control|502p|%01%1F|||||||%7F|%E2%80%A8|%F0%9F%98%80/x
        huge-topic|500h|dev-A1||||||||c|devices/dev-A1/abcdefgh
        huge-superuser|100h|adm-A1||||mqtt.admin|||cid|c|long/topic
        huge-client-id|800ch|dev-A1|||||||ü|ü|x
        interpreter-gateway|410i|gw-G1||||||dev-X1||gw|devices/dev-X1/a
        interpreter-user|201i|usr-U1|t1||writer|||||u|$share/g/tenants/t1/#"#,
    );
    let roles: Vec<String> = (0..65).map(|i| format!("role{i}")).collect();
    let line = format!("too-many-roles|200|usr-U1|t1||{}|||||u|x", roles.join(","));
    s.extend(table(&line));
    s
}

fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64.encode(bytes)
}

fn sidecar_bodies() -> Seeds {
    let policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let mut files = BTreeMap::new();
    for name in [
        "broker.rego",
        "mqtt_acl.rego",
        "broker_test.rego",
        "mqtt_acl_test.rego",
    ] {
        let text = std::fs::read_to_string(policies.join(name)).expect("shipped policy");
        files.insert(name.to_owned(), text);
    }
    let small: BTreeMap<&str, &str> = [
        ("broker.rego", "package broker\n\ngrants := {\"superuser\": false, \"publish\": [], \"subscribe\": []}\n"),
        ("mqtt_acl.rego", "package broker.mqtt.acl\n\ndefault allow := false\n"),
    ]
    .into();
    let device = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
    let public = b64(device.verifying_key().as_bytes());
    let announce_sig = b64(&device
        .sign(format!("announce:{public}:{NOW}").as_bytes())
        .to_bytes());
    let p256 = p256::ecdsa::SigningKey::from_bytes(&[0x44u8; 32].into()).expect("p256");
    let p256_public = b64(p256.verifying_key().to_encoded_point(true).as_bytes());
    let principal = json!({"id": "dev-A1", "type": "device", "protocol": "mqtt"});
    let cases: Vec<(&str, &str, Value)> = vec![
        (
            "register-device",
            "POST /identity/register admin",
            json!({"public_key": public, "type": "device", "name": "seed device"}),
        ),
        (
            "register-gateway",
            "POST /identity/register admin",
            json!({"public_key": p256_public, "type": "gateway", "metadata": {"devices": ["dev-A1"]}}),
        ),
        (
            "register-user",
            "POST /identity/register admin",
            json!({"public_key": b64(&[9; 32]), "type": "user", "tenant": "t1", "scopes": ["mqtt.admin"], "groups": ["g"]}),
        ),
        (
            "register-open",
            "POST /identity/register",
            json!({"public_key": b64(&[10; 32]), "type": "device"}),
        ),
        (
            "update-identity",
            "PATCH /identity/{{device}} admin",
            json!({"name": "renamed", "tenant": "t1", "scopes": [], "groups": ["admin"], "metadata": {"k": "v"}}),
        ),
        (
            "challenge",
            "POST /auth/challenge",
            json!({"public_key": public}),
        ),
        (
            "verify",
            "POST /auth/verify",
            json!({"public_key": public, "signature": announce_sig, "challenge": "c"}),
        ),
        (
            "announce",
            "POST /v1/announce",
            json!({"public_key": public, "timestamp": NOW, "signature": announce_sig, "ttl_seconds": 3600}),
        ),
        (
            "announce-text-ts",
            "POST /v1/announce",
            json!({"public_key": public, "timestamp": NOW.to_string(), "signature": announce_sig}),
        ),
        (
            "refresh",
            "POST /v1/auth/refresh",
            json!({"refresh_token": "{{refresh}}", "device_signature": "{{refresh_sig}}"}),
        ),
        (
            "go-user",
            "POST /user",
            json!({"username": "dev", "password": "{{access}}", "clientid": "c1"}),
        ),
        (
            "go-acl",
            "POST /acl",
            json!({"username": "dev", "password": "{{access}}", "clientid": "c1", "topic": "devices/{{device}}/status", "acc": 2}),
        ),
        (
            "go-acl-text-acc",
            "POST /acl",
            json!({"password": "{{access}}", "topic": "devices/+/cmd/#", "acc": "4"}),
        ),
        (
            "go-superuser",
            "POST /superuser",
            json!({"username": "dev", "password": "{{access}}"}),
        ),
        (
            "internal-auth",
            "POST /internal/mqtt/auth",
            json!({"token": "{{access}}", "client_id": "c1"}),
        ),
        (
            "internal-acl",
            "POST /internal/mqtt/acl",
            json!({"token": "{{access}}", "client_id": "c1", "topic": "devices/{{device}}/x", "action": "publish"}),
        ),
        (
            "new-app",
            "POST /apps admin",
            json!({"name": "seed-app", "description": "d"}),
        ),
        (
            "new-role",
            "POST /apps/app1/roles admin",
            json!({"name": "writer", "description": "w"}),
        ),
        (
            "assign-role",
            "POST /apps/app1/users/usr-U1/roles admin",
            json!({"role_id": "role-1"}),
        ),
        (
            "new-apikey",
            "POST /apikeys admin",
            json!({"app_id": "app1", "name": "k", "scopes": ["identity:register"], "expires_in_days": 30}),
        ),
        (
            "verify-apikey",
            "POST /apikeys/verify",
            json!({"key": "{{admin}}"}),
        ),
        (
            "nats-account",
            "POST /accounts",
            json!({"tenant_id": "t1", "name": "T1"}),
        ),
        (
            "nats-user",
            "POST /users",
            json!({"tenant_id": "t1", "sensor_id": "s1"}),
        ),
        (
            "nats-revoke",
            "POST /revoke",
            json!({"account_id": "AAAA", "user_pub_key": "UAAA"}),
        ),
        (
            "session-refresh",
            "POST /auth/refresh",
            json!({"refresh_token": "{{refresh}}"}),
        ),
        (
            "oauth-client",
            "POST /oauth/clients admin",
            json!({"name": "grafana", "redirect_uris": ["https://grafana.test/login/generic_oauth"], "scopes": ["openid"], "app_id": "app1"}),
        ),
        (
            "policy-validate",
            "POST /policies/validate admin",
            json!({"files": files}),
        ),
        (
            "policy-validate-small",
            "POST /policies/validate admin",
            json!({"files": small}),
        ),
        (
            "policy-deploy",
            "POST /policies admin",
            json!({"files": files, "message": "seed", "base_version": 1}),
        ),
        (
            "policy-rollback",
            "POST /policies/rollback admin",
            json!({"version": 1, "message": "back"}),
        ),
        (
            "policy-eval",
            "POST /policies/eval admin",
            json!({"input": {"principal": principal}}),
        ),
        (
            "policy-eval-acl",
            "POST /policies/eval admin",
            json!({"input": {"principal": principal, "topic": "devices/dev-A1/x", "action": "publish", "acc": 2, "clientid": "c"}, "query": "data.broker.mqtt.acl.allow", "explain": true}),
        ),
        (
            "policy-eval-files",
            "POST /policies/eval admin",
            json!({"input": {"principal": principal}, "files": small}),
        ),
        (
            "policy-diff",
            "POST /policies/diff admin",
            json!({"to": {"files": small}, "limit": 5}),
        ),
        (
            "policy-diff-version",
            "POST /policies/diff admin",
            json!({"from": 1, "to": 1}),
        ),
    ];
    let mut s: Seeds = cases
        .into_iter()
        .map(|(name, line, body)| (name.to_owned(), format!("{line}\n{body}").into_bytes()))
        .collect();
    add(
        &mut s,
        "register-text",
        "POST /identity/register admin text\n{}",
    );
    add(
        &mut s,
        "register-not-json",
        "POST /identity/register admin\n{\"public_key\": ",
    );
    add(
        &mut s,
        "device-bearer",
        "POST /apps device\n{\"name\": \"x\"}",
    );
    s
}

fn write(root: &Path, target: &str, seeds: &Seeds) -> std::io::Result<usize> {
    let dir = root.join(target);
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("seed-"))
        {
            std::fs::remove_file(path)?;
        }
    }
    let mut bytes = 0;
    for (name, data) in seeds {
        std::fs::write(dir.join(format!("seed-{name}")), data)?;
        bytes += data.len();
    }
    Ok(bytes)
}

fn main() -> std::io::Result<()> {
    let root = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus"),
        PathBuf::from,
    );
    let all: [(&str, Seeds); 6] = [
        ("token_verify", token_verify()),
        ("nats_authz_request", nats_authz_request()),
        ("mqtt_topic", mqtt_topic()),
        ("nats_subject", nats_subject()),
        ("policy_input", policy_input()),
        ("sidecar_bodies", sidecar_bodies()),
    ];
    let mut total = 0;
    for (target, seeds) in &all {
        let bytes = write(&root, target, seeds)?;
        println!("{target}: {} seeds, {bytes} bytes", seeds.len());
        total += bytes;
    }
    println!("{}: {total} bytes", root.display());
    Ok(())
}
