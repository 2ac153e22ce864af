//! The OpenAPI document (`/openapi.json`): schemas derived from the DTOs, paths from one table,
//! and the error-code table of `api::error` published as the `Error` schema.

use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::api::{apps, broker, devices, error::ERROR_CODES, identity, login, nats, ops, policies};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "broker-auth sidecar",
        description = "Authentication and authorization for MQTT and NATS brokers: identities and key login, device announce and refresh, apps, roles and API keys, login sessions, an OAuth2 server and upstream OpenID login, mosquitto-go-auth compatible broker routes, the NATS provisioner and resolver, revocations, and versioned Rego policies with a deploy gate and access diffs."
    ),
    components(schemas(
        identity::RegisterRequest,
        identity::UpdateIdentity,
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
        crate::oauth::clients::NewClient,
        crate::oauth::clients::ClientView,
        policies::ValidateRequest,
        policies::DeployRequest,
        policies::RollbackRequest,
        policies::EvalRequest,
        policies::DiffRequest,
        policies::DiffTo,
        policies::PolicyVersion,
        policies::FileInfo,
        policies::LivePolicy,
        policies::PolicyVersions,
        policies::PolicyVersionFiles,
        crate::api::error::TestResult,
        policies::Validated,
        policies::EvalResult,
        policies::PatternChangeView,
        policies::BoolChange,
        policies::PrincipalChange,
        policies::AccessDiff,
    ))
)]
struct Doc;

mod routes;
use routes::ROUTES;

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
