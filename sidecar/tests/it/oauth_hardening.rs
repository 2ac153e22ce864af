//! The OAuth2 server's edges: the admin-only client registry, discovery, an app's HS256 key,
//! hostile input on every OAuth route, and an upstream provider that cannot be reached.

use base64::Engine as _;
use rand_core::OsRng;
use serde_json::json;
use warp::http::StatusCode;

use super::harness::TestKey;
use super::harness::harness;
use super::oauth_server::{REDIRECT, VERIFIER, claims_of, field, fixture, get, location_params};

#[tokio::test]
async fn the_client_registry_is_admin_only_and_shows_secrets_once() {
    let f = fixture().await;
    let anon = f.h.call("GET", "/oauth/clients", None, None).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    let login = f.h.login(&f.key).await;
    let user = login.body["token"].as_str().unwrap();
    let r =
        f.h.call(
            "POST",
            "/oauth/clients",
            Some(json!({"name": "x", "redirect_uris": ["https://x/cb"]})),
            Some(user),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let list =
        f.h.call("GET", "/oauth/clients", None, Some(&f.h.admin))
            .await;
    let text = list.body.to_string();
    assert!(text.contains(&f.client_id));
    assert!(!text.contains(&f.secret) && !text.contains("client_secret"));
    for bad in [
        json!({"name": "x", "redirect_uris": []}),
        json!({"name": "x", "redirect_uris": ["/relative"]}),
        json!({"name": "x", "redirect_uris": ["https://x/cb#frag"]}),
        json!({"name": "x", "redirect_uris": ["https://x/cb"], "scopes": ["root"]}),
        json!({"name": "", "redirect_uris": ["https://x/cb"]}),
        json!({"name": 5, "redirect_uris": ["https://x/cb"]}),
    ] {
        let r =
            f.h.call(
                "POST",
                "/oauth/clients",
                Some(bad.clone()),
                Some(&f.h.admin),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // Deleting a client ends its ability to exchange codes.
    let code = f.code(&[]).await;
    let del =
        f.h.call(
            "DELETE",
            &format!("/oauth/clients/{}", f.client_id),
            None,
            Some(&f.h.admin),
        )
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(
        f.exchange(&code, VERIFIER).await.body["error"],
        "invalid_client"
    );
}

#[tokio::test]
async fn discovery_names_only_what_is_supported() {
    let f = fixture().await;
    let d =
        f.h.call("GET", "/.well-known/openid-configuration", None, None)
            .await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(d.body["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(d.body["response_types_supported"], json!(["code"]));
    assert_eq!(
        d.body["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert!(
        d.body["token_endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/oauth/token")
    );
}

#[tokio::test]
async fn an_apps_hs256_key_signs_its_users_tokens_and_speaks_for_no_one_else() {
    use broker_auth::identity::IdentityType;
    use broker_auth::token::{Claims, TokenUse};
    use sidecar::store::{IdentityRecord, UpstreamAccount};
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
    let h = harness(&["--app-hs256-secret", &format!("t1={secret}")]);
    let now = h.clock_now();
    // A person of app t1 who signed in upstream, and a registered admin.
    let person = IdentityRecord {
        id: IdentityType::User.new_id(&mut OsRng),
        kind: IdentityType::User,
        key_algorithm: None,
        public_key: None,
        upstream: Some(UpstreamAccount {
            iss: "https://id.example".into(),
            sub: "p1".into(),
            email: None,
            email_verified: false,
        }),
        name: None,
        tenant: Some("t1".into()),
        scopes: vec![],
        groups: vec![],
        metadata: Default::default(),
        created_at: now,
        disabled_at: None,
    };
    h.state.store.insert_identity(&person).unwrap();
    let admin = super::harness::TestKey::ed();
    let reg = h.register("admin", &admin.public(), json!({})).await;
    let admin_id = reg.body["identity_id"].as_str().unwrap().to_owned();

    let (claims, token) = h.state.session_access(&person, "ses-X").unwrap();
    let header = claims_of(&format!("x.{}", token.split('.').next().unwrap()));
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["kid"], "app-t1");
    assert_eq!(claims.exp - claims.iat, 900);
    // The app's person reads their profile with it.
    let me = h.call("GET", "/auth/me", None, Some(&token)).await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    // No enforcement point that trusts claims takes it: the brokers and the callout refuse.
    assert_eq!(
        h.state.verify(&token, TokenUse::Access).unwrap_err(),
        broker_auth::DenyCode::UnknownKey
    );
    // Whoever holds the secret can mint; what they mint speaks for no one but the app's people.
    let keys = h.state.auth.keys();
    let app_key = keys.get("app-t1").unwrap();
    let mut forged = Claims::new(
        &h.state.token_config,
        &admin_id,
        now,
        900,
        TokenUse::Access,
        &mut OsRng,
    );
    forged.tenant = Some("t1".into());
    let as_admin = keys.sign_with(app_key, &forged).unwrap();
    let r = h.call("GET", "/apps", None, Some(&as_admin)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    for other in [Some("t2".to_owned()), None] {
        let mut c = claims.clone();
        c.tenant = other;
        let t = keys.sign_with(app_key, &c).unwrap();
        assert_eq!(
            h.call("GET", "/auth/me", None, Some(&t)).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Apps without a configured secret keep the asymmetric key; the secret is never published.
    let mut c = claims.clone();
    c.tenant = Some("t2".into());
    let plain = h.state.sign_app_access(&c).unwrap();
    let header = claims_of(&format!("x.{}", plain.split('.').next().unwrap()));
    assert_eq!(header["alg"], "EdDSA");
    let jwks = h.call("GET", "/.well-known/jwks.json", None, None).await;
    assert!(!jwks.body.to_string().contains("app-t1"));
    // A secret shorter than 32 bytes is a configuration error.
    let short = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 16]);
    assert!(
        sidecar::cli::serve_args_from(["serve", "--app-hs256-secret", &format!("t1={short}")])
            .is_err()
    );
}
#[tokio::test]
async fn hostile_oauth_input_gets_a_clear_4xx_never_a_5xx() {
    let f = fixture().await;
    let long = "x".repeat(20_000);
    for q in [
        "",
        "%zz",
        "client_id=a&client_id=b",
        &format!("client_id={long}"),
        "client_id=%00&redirect_uri=%FF",
        "response_type=code&client_id=cli-nope&redirect_uri=javascript:alert(1)",
    ] {
        let r =
            f.h.call("GET", &format!("/oauth/authorize?{q}"), None, None)
                .await;
        assert!(r.status.is_client_error(), "{q:.30}: {}", r.status);
        assert!(r.headers.get("location").is_none(), "{q:.30}");
    }
    let big = format!("grant_type={long}");
    for body in [
        "",
        "grant_type",
        "%zz=1",
        "grant_type=authorization_code&code=",
        big.as_str(),
    ] {
        let r = f
            .form("/oauth/token", body, &[("authorization", &f.basic())])
            .await;
        assert!(r.status.is_client_error(), "{body:.30}: {}", r.status);
        assert!(r.body["error"].is_string(), "{body:.30}: {:?}", r.body);
    }
    for auth in [
        "Basic",
        "Basic !!!",
        "Basic Og==",
        "Bearer x",
        "Basic bm9jb2xvbg==",
    ] {
        let r = f
            .form(
                "/oauth/token",
                "grant_type=refresh_token&refresh_token=x",
                &[("authorization", auth)],
            )
            .await;
        assert_eq!(r.body["error"], "invalid_client", "{auth}");
    }
    for token in ["", "x", "a.b.c", &long] {
        let r = f.userinfo(token).await;
        assert!(r.status.is_client_error(), "{token:.30}");
    }
    // The sign-in page may style itself but run nothing and be framed by no one.
    let page = f.authorize(&[]).await;
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("script-src"));
    assert_eq!(page.headers["x-frame-options"], "DENY");
}

#[tokio::test]
async fn an_unreachable_provider_fails_closed_and_its_callback_refuses_garbage() {
    let h = harness(&["--upstream-oidc", "corp,http://127.0.0.1:9,id,secret"]);
    let app = h
        .call("POST", "/apps", Some(json!({"name": "a"})), Some(&h.admin))
        .await;
    let id = app.body["id"].as_str().unwrap();
    let r = h
        .call("GET", &format!("/oauth/corp?app_id={id}"), None, None)
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert!(r.headers.get("location").is_none());
    for q in [
        "",
        "?state=x&code=y",
        "?%zz",
        "?state=x&error=access_denied",
    ] {
        let r = h
            .call("GET", &format!("/oauth/corp/callback{q}"), None, None)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{q}: {:?}", r.body);
        assert_eq!(r.error(), "UPSTREAM_LOGIN_FAILED");
    }
    // Unknown providers and apps.
    let r = h.call("GET", "/oauth/nope?app_id=x", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h
        .call("GET", "/oauth/corp?app_id=missing", None, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h.call("GET", "/oauth/corp", None, None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_client_of_an_app_signs_in_only_its_people_with_a_proof_for_it_alone() {
    let f = fixture().await;
    let admin = f.h.admin.clone();
    let new_app = |name: &'static str| {
        let h = &f.h;
        let admin = admin.clone();
        async move {
            let r = h
                .call("POST", "/apps", Some(json!({"name": name})), Some(&admin))
                .await;
            r.body["id"].as_str().unwrap().to_owned()
        }
    };
    let (app_a, app_b) = (new_app("a").await, new_app("b").await);
    let client =
        f.h.call(
            "POST",
            "/oauth/clients",
            Some(json!({"name": "A's Grafana", "redirect_uris": [REDIRECT], "app_id": app_a})),
            Some(&admin),
        )
        .await;
    let client_a = client.body["client_id"].as_str().unwrap().to_owned();
    let person = |kind: &'static str, tenant: Option<String>| {
        let h = &f.h;
        async move {
            let key = TestKey::ed();
            let extra = tenant.map_or(json!({}), |t| json!({"tenant": t}));
            let r = h.register(kind, &key.public(), extra).await;
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
            key
        }
    };
    let of_a = person("user", Some(app_a.clone())).await;
    let of_b = person("user", Some(app_b)).await;
    let admin_elsewhere = person("admin", None).await;

    // A person of app B, and an admin of no app, are refused by A's client …
    for key in [&of_b, &admin_elsewhere] {
        let page = f.authorize_for(&client_a, &[]).await;
        let r = f.complete_with(&page, key).await;
        let p = location_params(&r);
        assert_eq!(get(&p, "error"), Some("access_denied"), "{p:?}");
        assert!(get(&p, "code").is_none());
    }
    // … a person of app A gets a code …
    let page = f.authorize_for(&client_a, &[]).await;
    let r = f.complete_with(&page, &of_a).await;
    assert!(get(&location_params(&r), "code").is_some(), "{:?}", r.body);
    // … and a client without an app still signs in anyone who may (the fixture's person).
    let page = f.authorize(&[]).await;
    let r = f.complete_with(&page, &of_b).await;
    assert!(get(&location_params(&r), "code").is_some());

    // The page's text names the client; a signature over the bare challenge (what a key login
    // at /auth/challenge signs) is refused.
    let other_page = f.authorize(&[]).await;
    let other_text = field(
        &String::from_utf8(other_page.raw.clone()).unwrap(),
        "challenge",
    );
    assert!(other_text.starts_with(&format!("oauth:{}:", f.client_id)));
    let page = f.authorize_for(&client_a, &[]).await;
    let html = String::from_utf8(page.raw.clone()).unwrap();
    let text = field(&html, "challenge");
    let bare = text
        .strip_prefix(&format!("oauth:{client_a}:"))
        .unwrap_or_else(|| panic!("the page's text is {text}"));
    let form = serde_urlencoded::to_string([
        ("request_id", field(&html, "request_id").as_str()),
        ("challenge", text.as_str()),
        ("public_key", of_a.public().as_str()),
        ("signature", of_a.sign(bare.as_bytes()).as_str()),
    ])
    .unwrap();
    let r = f.form("/oauth/authorize/complete", &form, &[]).await;
    assert_eq!(get(&location_params(&r), "error"), Some("access_denied"));
}
