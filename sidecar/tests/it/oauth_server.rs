//! The OAuth2 authorization server, in process with a manual clock: PKCE S256 only, exact
//! redirect URIs, `state` round trips, single-use 60-second codes whose replay revokes what they
//! issued, rotating refresh tokens bound to their client, client authentication, and the
//! separation between integration tokens and the product's own tokens.

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use warp::http::StatusCode;

use super::harness::{Harness, Reply, TestKey, harness};

pub const REDIRECT: &str = "https://grafana.example/login/generic_oauth";

pub struct Fixture {
    pub h: Harness,
    pub client_id: String,
    pub secret: String,
    pub key: TestKey,
    pub identity: String,
}

pub fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

pub const VERIFIER: &str = "a-verifier-of-more-than-forty-three-characters-0123456789";

pub async fn fixture() -> Fixture {
    let h = harness(&[]);
    let app = h
        .call(
            "POST",
            "/apps",
            Some(json!({"name": "ops"})),
            Some(&h.admin),
        )
        .await;
    let app_id = app.body["id"].as_str().unwrap().to_owned();
    let role = h
        .call(
            "POST",
            &format!("/apps/{app_id}/roles"),
            Some(json!({"name": "grafana-admin"})),
            Some(&h.admin),
        )
        .await;
    let key = TestKey::ed();
    let reg = h
        .register(
            "user",
            &key.public(),
            json!({"name": "Ada", "tenant": app_id, "groups": ["ops"],
                   "metadata": {"email": "ada@example.com"}}),
        )
        .await;
    assert_eq!(reg.status, StatusCode::CREATED, "{:?}", reg.body);
    let identity = reg.body["identity_id"].as_str().unwrap().to_owned();
    let assigned = h
        .call(
            "POST",
            &format!("/apps/{app_id}/users/{identity}/roles"),
            Some(json!({"role_id": role.body["id"]})),
            Some(&h.admin),
        )
        .await;
    assert!(assigned.status.is_success(), "{:?}", assigned.body);
    let client = h
        .call(
            "POST",
            "/oauth/clients",
            Some(json!({"name": "Grafana", "redirect_uris": [REDIRECT]})),
            Some(&h.admin),
        )
        .await;
    assert_eq!(client.status, StatusCode::CREATED, "{:?}", client.body);
    Fixture {
        client_id: client.body["client_id"].as_str().unwrap().to_owned(),
        secret: client.body["client_secret"].as_str().unwrap().to_owned(),
        h,
        key,
        identity,
    }
}

fn query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap()
}

/// The value of `name="…" value="…"` in the page.
pub fn field(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\""))
        .unwrap_or_else(|| panic!("no {name} in page:\n{html}"));
    let rest = &html[at..];
    let v = &rest[rest.find("value=\"").unwrap() + 7..];
    v[..v.find('"').unwrap()].to_owned()
}

/// The query parameters of a Location header.
pub fn location_params(r: &Reply) -> Vec<(String, String)> {
    let loc = r.headers["location"].to_str().unwrap();
    let q = loc.split_once('?').map_or("", |(_, q)| q);
    serde_urlencoded::from_str(q).unwrap()
}

pub fn get<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

impl Fixture {
    pub async fn authorize(&self, extra: &[(&str, &str)]) -> Reply {
        self.authorize_for(&self.client_id, extra).await
    }

    /// The authorization page of another registered client (same redirect URI).
    pub async fn authorize_for(&self, client_id: &str, extra: &[(&str, &str)]) -> Reply {
        let challenge = s256(VERIFIER);
        let mut q = vec![
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("state", "st-1"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("scope", "openid profile email"),
            ("nonce", "n-1"),
        ];
        for (k, v) in extra {
            q.retain(|(n, _)| n != k);
            if !v.is_empty() {
                q.push((k, v));
            }
        }
        self.h
            .call(
                "GET",
                &format!("/oauth/authorize?{}", query(&q)),
                None,
                None,
            )
            .await
    }

    pub async fn complete_with(&self, page: &Reply, key: &TestKey) -> Reply {
        let html = String::from_utf8(page.raw.clone()).unwrap();
        let challenge = field(&html, "challenge");
        let form = query(&[
            ("request_id", &field(&html, "request_id")),
            ("challenge", &challenge),
            ("public_key", &key.public()),
            ("signature", &key.sign(challenge.as_bytes())),
        ]);
        self.form("/oauth/authorize/complete", &form, &[]).await
    }

    pub async fn form(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
        let mut hs = vec![("content-type", "application/x-www-form-urlencoded")];
        hs.extend_from_slice(headers);
        self.h
            .call_from(
                "198.51.100.7:4000",
                "POST",
                path,
                Some(body.as_bytes().to_vec()),
                None,
                &hs,
            )
            .await
    }

    /// A fresh code for the fixture's person (authorize + signed challenge).
    pub async fn code(&self, extra: &[(&str, &str)]) -> String {
        let page = self.authorize(extra).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        let done = self.complete_with(&page, &self.key).await;
        assert_eq!(done.status, StatusCode::FOUND);
        let p = location_params(&done);
        assert_eq!(get(&p, "state"), Some("st-1"));
        get(&p, "code").unwrap().to_owned()
    }

    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.client_id, self.secret);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    pub async fn exchange(&self, code: &str, verifier: &str) -> Reply {
        let body = query(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ]);
        self.form("/oauth/token", &body, &[("authorization", &self.basic())])
            .await
    }

    pub async fn refresh(&self, token: &str) -> Reply {
        let body = query(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", &self.client_id),
            ("client_secret", &self.secret),
        ]);
        self.form("/oauth/token", &body, &[]).await
    }

    pub async fn userinfo(&self, token: &str) -> Reply {
        self.h
            .call("GET", "/oauth/userinfo", None, Some(token))
            .await
    }
}

pub fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn code_flow_issues_tokens_userinfo_and_an_id_token_for_the_client() {
    let f = fixture().await;
    let code = f.code(&[]).await;
    let t = f.exchange(&code, VERIFIER).await;
    assert_eq!(t.status, StatusCode::OK, "{:?}", t.body);
    assert_eq!(t.headers["cache-control"], "no-store");
    assert_eq!(t.body["token_type"], "Bearer");
    assert_eq!(t.body["expires_in"], 900);
    assert_eq!(t.body["scope"], "openid profile email");
    let id = claims_of(t.body["id_token"].as_str().unwrap());
    assert_eq!(id["aud"], f.client_id.as_str());
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["sub"], f.identity.as_str());
    let access = t.body["access_token"].as_str().unwrap();
    let info = f.userinfo(access).await;
    assert_eq!(info.status, StatusCode::OK, "{:?}", info.body);
    assert_eq!(info.body["sub"], f.identity.as_str());
    assert_eq!(info.body["login"], f.identity.as_str());
    assert_eq!(info.body["name"], "Ada");
    assert_eq!(info.body["email"], "ada@example.com");
    assert_eq!(info.body["groups"], json!(["ops"]));
    assert_eq!(info.body["roles"], json!(["grafana-admin"]));
    // The ID token is the client's, not a bearer credential here.
    let id_token = t.body["id_token"].as_str().unwrap();
    assert_eq!(f.userinfo(id_token).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn integration_tokens_are_not_the_products_tokens() {
    let f = fixture().await;
    let code = f.code(&[]).await;
    let t = f.exchange(&code, VERIFIER).await;
    let access = t.body["access_token"].as_str().unwrap();
    // Grafana holding the user's token cannot act as the user elsewhere.
    let me = f.h.call("GET", "/auth/me", None, Some(access)).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED, "{:?}", me.body);
    let user =
        f.h.call(
            "POST",
            "/user",
            Some(json!({"username": "x"})),
            Some(access),
        )
        .await;
    assert_eq!(user.status, StatusCode::FORBIDDEN);
    // And a key-login token is not accepted at userinfo.
    let login = f.h.login(&f.key).await;
    let own = login.body["token"].as_str().unwrap();
    assert_eq!(f.userinfo(own).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn pkce_s256_is_required() {
    let f = fixture().await;
    for (why, extra) in [
        (
            "no challenge",
            vec![("code_challenge", ""), ("code_challenge_method", "")],
        ),
        ("plain", vec![("code_challenge_method", "plain")]),
        ("no method", vec![("code_challenge_method", "")]),
        ("not a S256 value", vec![("code_challenge", "too-short")]),
    ] {
        let r = f.authorize(&extra).await;
        assert_eq!(r.status, StatusCode::FOUND, "{why}");
        let p = location_params(&r);
        assert_eq!(get(&p, "error"), Some("invalid_request"), "{why}");
        assert_eq!(get(&p, "state"), Some("st-1"), "{why}");
        assert!(get(&p, "code").is_none(), "{why}");
    }
    // The token endpoint checks the verifier: wrong, too short, too long, missing.
    let code = f.code(&[]).await;
    let wrong = f.exchange(&code, &"b".repeat(60)).await;
    assert_eq!(wrong.body["error"], "invalid_grant");
    for bad in ["a".repeat(42), "a".repeat(129), String::new()] {
        let code = f.code(&[]).await;
        assert_eq!(
            f.exchange(&code, &bad).await.body["error"],
            "invalid_request"
        );
    }
    // 128 characters (what Grafana sends) is fine.
    let long = "G".repeat(128);
    let code = f.code(&[("code_challenge", &s256(&long))]).await;
    assert_eq!(f.exchange(&code, &long).await.status, StatusCode::OK);
}

#[tokio::test]
async fn redirect_uri_must_match_exactly_and_is_never_an_open_redirect() {
    let f = fixture().await;
    for uri in [
        "https://grafana.example/login/generic_oauth/",
        "https://grafana.example/login/generic_oauth?x=1",
        "https://GRAFANA.example/login/generic_oauth",
        "https://grafana.example/login",
        "https://evil.example/login/generic_oauth",
        "",
    ] {
        let r = f.authorize(&[("redirect_uri", uri)]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(r.body["error"], "invalid_request", "{uri}");
        assert!(r.headers.get("location").is_none(), "{uri}");
    }
    let r = f.authorize(&[("client_id", "cli-unknown")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.headers.get("location").is_none());
    // The token endpoint wants the same URI again.
    let code = f.code(&[]).await;
    let body = query(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        (
            "redirect_uri",
            "https://grafana.example/login/generic_oauth/",
        ),
        ("code_verifier", VERIFIER),
    ]);
    let r = f
        .form("/oauth/token", &body, &[("authorization", &f.basic())])
        .await;
    assert_eq!(r.body["error"], "invalid_grant");
}

#[tokio::test]
async fn state_is_required_and_round_trips_byte_for_byte() {
    let f = fixture().await;
    let r = f.authorize(&[("state", "")]).await;
    assert_eq!(get(&location_params(&r), "error"), Some("invalid_request"));
    let odd = "a b&c=d/é?";
    let page = f.authorize(&[("state", odd)]).await;
    let done = f.complete_with(&page, &f.key).await;
    assert_eq!(get(&location_params(&done), "state"), Some(odd));
    let r = f.authorize(&[("response_type", "token")]).await;
    assert_eq!(
        get(&location_params(&r), "error"),
        Some("unsupported_response_type")
    );
    let r = f.authorize(&[("scope", "openid admin")]).await;
    assert_eq!(get(&location_params(&r), "error"), Some("invalid_scope"));
}

#[tokio::test]
async fn a_code_works_once_and_its_replay_revokes_what_it_issued() {
    let f = fixture().await;
    let code = f.code(&[]).await;
    let first = f.exchange(&code, VERIFIER).await;
    assert_eq!(first.status, StatusCode::OK);
    let access = first.body["access_token"].as_str().unwrap();
    let refresh = first.body["refresh_token"].as_str().unwrap();
    assert_eq!(f.userinfo(access).await.status, StatusCode::OK);
    let again = f.exchange(&code, VERIFIER).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.body["error"], "invalid_grant");
    // What the first exchange issued is dead: access token and refresh token.
    assert_eq!(f.userinfo(access).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(f.refresh(refresh).await.body["error"], "invalid_grant");
}

#[tokio::test]
async fn codes_expire_after_sixty_seconds() {
    let f = fixture().await;
    let code = f.code(&[]).await;
    f.h.clock.advance(61);
    let r = f.exchange(&code, VERIFIER).await;
    assert_eq!(r.body["error"], "invalid_grant");
    let code = f.code(&[]).await;
    f.h.clock.advance(59);
    assert_eq!(f.exchange(&code, VERIFIER).await.status, StatusCode::OK);
}

#[tokio::test]
async fn refresh_tokens_rotate_are_bound_to_their_client_and_reuse_revokes_the_family() {
    let f = fixture().await;
    let code = f.code(&[]).await;
    let t = f.exchange(&code, VERIFIER).await;
    let r1 = t.body["refresh_token"].as_str().unwrap().to_owned();
    // Another registered client cannot use (or burn) it.
    let other =
        f.h.call(
            "POST",
            "/oauth/clients",
            Some(json!({"name": "Other", "redirect_uris": ["https://other.example/cb"]})),
            Some(&f.h.admin),
        )
        .await;
    let body = query(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &r1),
        ("client_id", other.body["client_id"].as_str().unwrap()),
        (
            "client_secret",
            other.body["client_secret"].as_str().unwrap(),
        ),
    ]);
    assert_eq!(
        f.form("/oauth/token", &body, &[]).await.body["error"],
        "invalid_grant"
    );
    let second = f.refresh(&r1).await;
    assert_eq!(second.status, StatusCode::OK, "{:?}", second.body);
    let r2 = second.body["refresh_token"].as_str().unwrap().to_owned();
    let a2 = second.body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    assert_eq!(second.body["scope"], "openid profile email");
    assert_eq!(f.userinfo(&a2).await.status, StatusCode::OK);
    // r1 again: theft. The family ends, r2 and its access token with it.
    assert_eq!(f.refresh(&r1).await.body["error"], "invalid_grant");
    assert_eq!(f.refresh(&r2).await.body["error"], "invalid_grant");
    assert_eq!(f.userinfo(&a2).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn client_authentication_and_rfc6749_errors() {
    let f = fixture().await;
    let code = f.code(&[]).await;
    let exchange = |auth: Vec<(&'static str, String)>, extra: Vec<(&'static str, String)>| {
        let mut pairs = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.clone()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code_verifier", VERIFIER.to_owned()),
        ];
        pairs.extend(extra);
        (serde_urlencoded::to_string(&pairs).unwrap(), auth)
    };
    let wrong_secret = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:nope", f.client_id))
    );
    let (body, _) = exchange(vec![], vec![]);
    let r = f
        .form("/oauth/token", &body, &[("authorization", &wrong_secret)])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["error"], "invalid_client");
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_eq!(r.headers["cache-control"], "no-store");
    // No client authentication at all.
    assert_eq!(
        f.form("/oauth/token", &body, &[]).await.body["error"],
        "invalid_client"
    );
    // Both methods at once.
    let (both, _) = exchange(vec![], vec![("client_secret", f.secret.clone())]);
    let r = f
        .form("/oauth/token", &both, &[("authorization", &f.basic())])
        .await;
    assert_eq!(r.body["error"], "invalid_request");
    // A repeated parameter.
    let r = f
        .form(
            "/oauth/token",
            &format!("{body}&code=again"),
            &[("authorization", &f.basic())],
        )
        .await;
    assert_eq!(r.body["error"], "invalid_request");
    let r = f
        .form(
            "/oauth/token",
            "grant_type=password&username=a&password=b",
            &[("authorization", &f.basic())],
        )
        .await;
    assert_eq!(r.body["error"], "unsupported_grant_type");
    // None of that burned the code: client_secret_post works.
    let (post, _) = exchange(
        vec![],
        vec![
            ("client_id", f.client_id.clone()),
            ("client_secret", f.secret.clone()),
        ],
    );
    let ok = f.form("/oauth/token", &post, &[]).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
}

#[tokio::test]
async fn the_authorize_page_refuses_bad_proofs_and_works_once() {
    let f = fixture().await;
    let page = f.authorize(&[]).await;
    let html = String::from_utf8(page.raw.clone()).unwrap();
    assert!(html.contains("Grafana"));
    assert_eq!(
        page.headers["content-type"].to_str().unwrap(),
        "text/html; charset=utf-8"
    );
    // Another key's signature: access denied, back to the client with state.
    let stranger = TestKey::ed();
    let r = f.complete_with(&page, &stranger).await;
    let p = location_params(&r);
    assert_eq!(get(&p, "error"), Some("access_denied"));
    assert_eq!(get(&p, "state"), Some("st-1"));
    // The request is spent: the right key cannot reuse it.
    let r = f.complete_with(&page, &f.key).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"], "invalid_request");
    // A device may not sign in to an integration, even with a valid signature.
    let device = TestKey::ed();
    f.h.register("device", &device.public(), json!({})).await;
    let page = f.authorize(&[]).await;
    let r = f.complete_with(&page, &device).await;
    assert_eq!(get(&location_params(&r), "error"), Some("access_denied"));
    // A signature over another challenge.
    let page = f.authorize(&[]).await;
    let html = String::from_utf8(page.raw.clone()).unwrap();
    let form = query(&[
        ("request_id", &field(&html, "request_id")),
        ("challenge", "something-else"),
        ("public_key", &f.key.public()),
        ("signature", &f.key.sign(b"something-else")),
    ]);
    let r = f.form("/oauth/authorize/complete", &form, &[]).await;
    assert_eq!(get(&location_params(&r), "error"), Some("access_denied"));
    // Hostile input never reaches a 5xx.
    for body in ["", "request_id", "%zz=1", &"x".repeat(70_000)] {
        let r = f.form("/oauth/authorize/complete", body, &[]).await;
        assert!(r.status.is_client_error(), "{body:.20}: {}", r.status);
    }
}

#[tokio::test]
async fn two_concurrent_exchanges_of_one_code_leave_nothing_usable() {
    let f = fixture().await;
    let code = f.code(&[]).await;
    let (a, b) = tokio::join!(f.exchange(&code, VERIFIER), f.exchange(&code, VERIFIER));
    let (ok, refused) = if a.status == StatusCode::OK {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    assert_eq!(refused.body["error"], "invalid_grant");
    // Whatever the interleaving, the replay revoked what the winner issued.
    let access = ok.body["access_token"].as_str().unwrap();
    assert_eq!(f.userinfo(access).await.status, StatusCode::UNAUTHORIZED);
    let refresh = ok.body["refresh_token"].as_str().unwrap();
    assert_eq!(f.refresh(refresh).await.body["error"], "invalid_grant");
}
