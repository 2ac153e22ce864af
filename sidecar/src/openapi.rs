//! The OpenAPI document (`/openapi.json`): schemas derived from the DTOs, paths from one table,
//! and the error-code table of `api::error` published as the `Error` schema.

use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::api::{apps, broker, devices, error::ERROR_CODES, identity, login, nats, ops};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "broker-auth sidecar",
        description = "Identities, key login, device announce and refresh, revocation."
    ),
    components(schemas(
        identity::RegisterRequest,
        identity::IdentityView,
        identity::IdentityPage,
        identity::Me,
        login::ChallengeRequest,
        login::ChallengeResponse,
        login::VerifyRequest,
        login::VerifyResponse,
        devices::AnnounceRequest,
        devices::AnnounceResponse,
        devices::RefreshRequest,
        devices::RefreshResponse,
        devices::Feed,
        devices::FeedEntry,
        ops::Health,
        broker::GoAuthRequest,
        broker::Acc,
        broker::InternalAuthRequest,
        broker::InternalAclRequest,
        login::SessionRefreshRequest,
        login::SessionRefreshResponse,
        apps::NewApp,
        apps::AppView,
        apps::NewRole,
        apps::RoleView,
        apps::AssignRole,
        apps::NewApiKeyRequest,
        apps::VerifyApiKey,
        nats::AccountRequest,
        nats::UserRequest,
        nats::RevokeRequest,
    ))
)]
struct Doc;

struct Route {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    tag: &'static str,
    request: Option<&'static str>,
    ok: (u16, Option<&'static str>),
    auth: bool,
    errors: &'static [u16],
}

const ROUTES: &[Route] = &[
    Route {
        method: "post",
        path: "/identity/register",
        summary: "Register an identity (admin, an API key with identity:register for the type, or open registration of devices/gateways)",
        tag: "identities",
        request: Some("RegisterRequest"),
        ok: (201, Some("IdentityView")),
        auth: true,
        errors: &[400, 401, 403, 409, 413, 429],
    },
    Route {
        method: "get",
        path: "/identity",
        summary: "List identities (admin), paged with ?limit=&after=",
        tag: "identities",
        request: None,
        ok: (200, Some("IdentityPage")),
        auth: true,
        errors: &[401, 403, 429],
    },
    Route {
        method: "get",
        path: "/identity/{id}",
        summary: "Read an identity (admin, or the identity itself)",
        tag: "identities",
        request: None,
        ok: (200, Some("IdentityView")),
        auth: true,
        errors: &[401, 403, 404, 429],
    },
    Route {
        method: "delete",
        path: "/identity/{id}",
        summary: "Disable an identity and revoke every token of it (admin)",
        tag: "identities",
        request: None,
        ok: (204, None),
        auth: true,
        errors: &[401, 403, 404, 429],
    },
    Route {
        method: "get",
        path: "/auth/me",
        summary: "The calling identity",
        tag: "identities",
        request: None,
        ok: (200, Some("Me")),
        auth: true,
        errors: &[401, 403, 429],
    },
    Route {
        method: "post",
        path: "/auth/challenge",
        summary: "Ask for a challenge to sign (5 minutes, single use, bound to the key)",
        tag: "key login",
        request: Some("ChallengeRequest"),
        ok: (200, Some("ChallengeResponse")),
        auth: false,
        errors: &[400, 403, 404, 413, 429],
    },
    Route {
        method: "post",
        path: "/auth/verify",
        summary: "Exchange a signed challenge for an access token",
        tag: "key login",
        request: Some("VerifyRequest"),
        ok: (200, Some("VerifyResponse")),
        auth: false,
        errors: &[400, 401, 403, 413, 429],
    },
    Route {
        method: "post",
        path: "/v1/announce",
        summary: "Announce a device: proves key possession, opens an announcement, returns access and refresh tokens",
        tag: "devices",
        request: Some("AnnounceRequest"),
        ok: (200, Some("AnnounceResponse")),
        auth: false,
        errors: &[400, 401, 403, 404, 413, 429],
    },
    Route {
        method: "post",
        path: "/v1/auth/refresh",
        summary: "New access token for a refresh token signed with the device key",
        tag: "devices",
        request: Some("RefreshRequest"),
        ok: (200, Some("RefreshResponse")),
        auth: false,
        errors: &[400, 401, 413, 429],
    },
    Route {
        method: "delete",
        path: "/v1/announce",
        summary: "Deregister: end the announcement of the presented device token",
        tag: "devices",
        request: None,
        ok: (204, None),
        auth: true,
        errors: &[401, 403, 429],
    },
    Route {
        method: "get",
        path: "/v1/revocations",
        summary: "Revocation feed after ?since=<seq> (admin)",
        tag: "devices",
        request: None,
        ok: (200, Some("Feed")),
        auth: true,
        errors: &[401, 403],
    },
    Route {
        method: "get",
        path: "/health",
        summary: "Liveness and policy status (no auth, no rate limit)",
        tag: "operations",
        request: None,
        ok: (200, Some("Health")),
        auth: false,
        errors: &[],
    },
    Route {
        method: "get",
        path: "/healthz",
        summary: "204 when the store answers",
        tag: "operations",
        request: None,
        ok: (204, None),
        auth: false,
        errors: &[503],
    },
    Route {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics",
        tag: "operations",
        request: None,
        ok: (200, None),
        auth: false,
        errors: &[],
    },
    Route {
        method: "get",
        path: "/.well-known/jwks.json",
        summary: "Public token signing keys",
        tag: "operations",
        request: None,
        ok: (200, None),
        auth: false,
        errors: &[],
    },
    Route {
        method: "get",
        path: "/admin/bans",
        summary: "Banned client IPs (admin)",
        tag: "operations",
        request: None,
        ok: (200, None),
        auth: true,
        errors: &[401, 403],
    },
    Route {
        method: "delete",
        path: "/admin/bans/{ip}",
        summary: "Lift a ban (admin)",
        tag: "operations",
        request: None,
        ok: (204, None),
        auth: true,
        errors: &[401, 403, 404],
    },
    Route {
        method: "post",
        path: "/admin/keys/rotate",
        summary: "Add a new signing key; old keys verify until their tokens expire (admin)",
        tag: "operations",
        request: None,
        ok: (200, None),
        auth: true,
        errors: &[401, 403],
    },
    Route {
        method: "post",
        path: "/user",
        summary: "mosquitto-go-auth user check: the token as Bearer or as `password` (JSON or form); 200 {ok:true} / 403 {ok:false}",
        tag: "broker auth",
        request: Some("GoAuthRequest"),
        ok: (200, None),
        auth: false,
        errors: &[400, 403, 413, 415],
    },
    Route {
        method: "post",
        path: "/acl",
        summary: "mosquitto-go-auth ACL check: topic and acc (1 read, 2 publish, 4 subscribe; bits combine)",
        tag: "broker auth",
        request: Some("GoAuthRequest"),
        ok: (200, None),
        auth: false,
        errors: &[400, 403, 413, 415],
    },
    Route {
        method: "post",
        path: "/superuser",
        summary: "mosquitto-go-auth superuser check (scope mqtt.admin, group admin or mqtt.admin)",
        tag: "broker auth",
        request: Some("GoAuthRequest"),
        ok: (200, None),
        auth: false,
        errors: &[400, 403, 413, 415],
    },
    Route {
        method: "post",
        path: "/internal/mqtt/auth",
        summary: "Internal connect decision: grants of a token (X-Internal-Secret)",
        tag: "broker auth",
        request: Some("InternalAuthRequest"),
        ok: (200, None),
        auth: false,
        errors: &[400, 401, 403, 413, 415],
    },
    Route {
        method: "post",
        path: "/internal/mqtt/acl",
        summary: "Internal topic decision for a token (X-Internal-Secret)",
        tag: "broker auth",
        request: Some("InternalAclRequest"),
        ok: (200, None),
        auth: false,
        errors: &[400, 401, 403, 413, 415],
    },
    Route {
        method: "get",
        path: "/apps",
        summary: "List apps (admin)",
        tag: "apps",
        request: None,
        ok: (200, None),
        auth: true,
        errors: &[401, 403],
    },
    Route {
        method: "post",
        path: "/apps",
        summary: "Create an app, a tenant of the product (admin)",
        tag: "apps",
        request: Some("NewApp"),
        ok: (201, Some("AppView")),
        auth: true,
        errors: &[400, 401, 403, 413, 415],
    },
    Route {
        method: "get",
        path: "/apps/{id}/roles",
        summary: "Roles of an app (admin, a member of the app, or an API key of the app)",
        tag: "apps",
        request: None,
        ok: (200, None),
        auth: true,
        errors: &[401, 403, 404],
    },
    Route {
        method: "post",
        path: "/apps/{id}/roles",
        summary: "Create a role; names are unique per app (admin)",
        tag: "apps",
        request: Some("NewRole"),
        ok: (201, Some("RoleView")),
        auth: true,
        errors: &[400, 401, 403, 404, 409],
    },
    Route {
        method: "post",
        path: "/apps/{id}/users/{user_id}/roles",
        summary: "Give a user a role of the app; it reaches the user's next tokens (admin)",
        tag: "apps",
        request: Some("AssignRole"),
        ok: (200, None),
        auth: true,
        errors: &[400, 401, 403, 404],
    },
    Route {
        method: "post",
        path: "/apikeys",
        summary: "Create an API key of an app; expires_in_days 1-365 is mandatory; the key is shown once (admin)",
        tag: "api keys",
        request: Some("NewApiKeyRequest"),
        ok: (201, None),
        auth: true,
        errors: &[400, 401, 403, 404],
    },
    Route {
        method: "delete",
        path: "/apikeys/{id}",
        summary: "Revoke an API key (admin)",
        tag: "api keys",
        request: None,
        ok: (204, None),
        auth: true,
        errors: &[401, 403, 404],
    },
    Route {
        method: "post",
        path: "/apikeys/verify",
        summary: "Verify an API key: checksum, hash, expiry and revocation (rate limited)",
        tag: "api keys",
        request: Some("VerifyApiKey"),
        ok: (200, None),
        auth: false,
        errors: &[400, 401, 429],
    },
    Route {
        method: "get",
        path: "/jwt/v1/accounts/",
        summary: "NATS account resolver: the system account JWT (application/jwt)",
        tag: "nats",
        request: None,
        ok: (200, None),
        auth: false,
        errors: &[404],
    },
    Route {
        method: "get",
        path: "/jwt/v1/accounts/{pubkey}",
        summary: "NATS account resolver: one account JWT (application/jwt)",
        tag: "nats",
        request: None,
        ok: (200, None),
        auth: false,
        errors: &[404],
    },
    Route {
        method: "post",
        path: "/accounts",
        summary: "Create-or-return a tenant's NATS account (X-Backend-Shared-Secret)",
        tag: "nats",
        request: Some("AccountRequest"),
        ok: (201, None),
        auth: false,
        errors: &[400, 401, 404],
    },
    Route {
        method: "post",
        path: "/users",
        summary: "Create-or-return a sensor user and its .creds (X-Backend-Shared-Secret)",
        tag: "nats",
        request: Some("UserRequest"),
        ok: (200, None),
        auth: false,
        errors: &[400, 401, 403, 404],
    },
    Route {
        method: "post",
        path: "/backend-user",
        summary: "The backend's .creds in the CONTROL account (X-Backend-Shared-Secret)",
        tag: "nats",
        request: None,
        ok: (200, None),
        auth: false,
        errors: &[401, 404],
    },
    Route {
        method: "post",
        path: "/revoke",
        summary: "Revoke a NATS user: account JWT re-signed and pushed (X-Backend-Shared-Secret)",
        tag: "nats",
        request: Some("RevokeRequest"),
        ok: (200, None),
        auth: false,
        errors: &[400, 401, 404],
    },
    Route {
        method: "post",
        path: "/auth/refresh",
        summary: "Exchange a rotating refresh token (from /auth/verify) for a new access and refresh token; a reused token revokes its whole session (4009)",
        tag: "login",
        request: Some("SessionRefreshRequest"),
        ok: (200, Some("SessionRefreshResponse")),
        auth: false,
        errors: &[400, 401, 413, 415, 429],
    },
    Route {
        method: "post",
        path: "/auth/logout",
        summary: "End every session of the caller: refresh tokens and the sessions' access tokens stop working",
        tag: "login",
        request: None,
        ok: (204, None),
        auth: true,
        errors: &[401, 403, 429],
    },
];

/// The template of the documented route `path` belongs to (`/identity/usr-X` → `/identity/{id}`).
pub fn route_template(path: &str) -> Option<&'static str> {
    ROUTES.iter().map(|r| r.path).find(|template| {
        let mut t = template.split('/');
        let mut p = path.split('/');
        loop {
            match (t.next(), p.next()) {
                (None, None) => return true,
                (Some(ts), Some(ps)) if ts.starts_with('{') && !ps.is_empty() => {}
                (Some(ts), Some(ps)) if ts == ps => {}
                _ => return false,
            }
        }
    })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

pub fn document() -> Value {
    let mut doc = serde_json::to_value(Doc::openapi()).unwrap_or_else(|_| json!({}));
    let mut paths = serde_json::Map::new();
    for r in ROUTES {
        let mut responses = serde_json::Map::new();
        let ok = match r.ok.1 {
            Some(s) => {
                json!({"description": "OK", "content": {"application/json": {"schema": schema_ref(s)}}})
            }
            None => json!({"description": "OK"}),
        };
        responses.insert(r.ok.0.to_string(), ok);
        for status in r.errors {
            responses.insert(
                status.to_string(),
                json!({"description": "error envelope", "content": {"application/json": {"schema": schema_ref("Error")}}}),
            );
        }
        let mut op = json!({"summary": r.summary, "tags": [r.tag], "responses": responses});
        if let Some(req) = r.request {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema_ref(req)}}});
        }
        if r.auth {
            op["security"] = json!([{"bearer": []}]);
        }
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        let item = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        item[r.method] = op;
    }
    doc["paths"] = Value::Object(paths);
    let codes: Vec<Value> = ERROR_CODES
        .iter()
        .map(|(name, code, status, what)| json!({"error": name, "code": code, "status": status, "meaning": what}))
        .collect();
    let components = &mut doc["components"];
    components["securitySchemes"] = json!({"bearer": {"type": "http", "scheme": "bearer",
        "description": "An access token (JWT) or an API key (ak_…)"}});
    components["schemas"]["Error"] = json!({
        "type": "object",
        "required": ["error", "message", "code"],
        "properties": {
            "error": {"type": "string", "enum": ERROR_CODES.iter().map(|c| c.0).collect::<Vec<_>>()},
            "message": {"type": "string"},
            "code": {"type": "integer", "enum": ERROR_CODES.iter().map(|c| c.1).collect::<Vec<_>>()},
            "retry_after": {"type": "integer", "description": "seconds (RATE_LIMIT_EXCEEDED, LOCKED_OUT)"}
        },
        "x-error-codes": codes,
    });
    doc
}

#[cfg(test)]
mod tests {
    use super::route_template;

    #[test]
    fn paths_map_to_their_documented_templates() {
        assert_eq!(route_template("/identity/usr-ABC"), Some("/identity/{id}"));
        assert_eq!(route_template("/identity"), Some("/identity"));
        assert_eq!(
            route_template("/admin/bans/10.0.0.1"),
            Some("/admin/bans/{ip}")
        );
        assert_eq!(route_template("/identity/"), None);
        assert_eq!(route_template("/identity/a/b"), None);
        assert_eq!(route_template("/nope"), None);
    }
}
