//! The [`Principal`]: what every enforcement point hands the policy about a verified client.
//!
//! Names that the policy splices into topics (id, tenant, gateway devices) are restricted to a safe
//! alphabet here, once, so no principal can smuggle `/`, `+`, `#`, `.`, `*` or `>` into a grant.

use serde::{Deserialize, Serialize};

use crate::decision::DenyCode;
use crate::identity::IdentityType;
use crate::token::Claims;

/// Which protocol the client is using.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// MQTT (embedded broker, HTTP-auth brokers, or nats-server's MQTT listener); the default
    /// of a principal written by hand (`policy diff --principals`).
    #[default]
    Mqtt,
    /// NATS.
    Nats,
    /// HTTP.
    Http,
}

/// A verified client, as the policy sees it (tokens-and-policy.md, "The principal").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Identity id, user id or device address.
    pub id: String,
    /// Identity type.
    #[serde(rename = "type")]
    pub kind: IdentityType,
    /// Tenant (app id), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Roles in the tenant.
    #[serde(default)]
    pub roles: Vec<String>,
    /// OAuth-style scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// For gateways: the device ids the gateway acts for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Protocol-level client id (MQTT client id, NATS client name), informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Protocol of the request.
    #[serde(default)]
    pub protocol: Protocol,
}

const MAX_NAME: usize = 128;

/// Whether `s` may be spliced into a topic or subject: 1–128 of `[A-Za-z0-9_-]`.
pub fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `s` is an acceptable role, scope or group: 1–128 of `[A-Za-z0-9_.:-]`.
pub fn is_safe_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

impl Principal {
    /// Build a principal from verified token claims.
    pub fn from_claims(
        claims: &Claims,
        protocol: Protocol,
        client_id: Option<&str>,
    ) -> Result<Principal, DenyCode> {
        let kind = claims
            .idt
            .or_else(|| IdentityType::of_id(&claims.sub))
            .ok_or(DenyCode::InvalidPrincipal)?;
        let p = Principal {
            id: claims.sub.clone(),
            kind,
            tenant: claims.tenant.clone().or_else(|| claims.app_id.clone()),
            roles: claims.roles.clone(),
            scopes: claims.scopes.clone(),
            groups: claims.groups.clone(),
            devices: claims.devices.clone(),
            client_id: client_id.map(|c| c.chars().take(256).collect()),
            protocol,
        };
        p.validate()?;
        Ok(p)
    }

    /// The same client as its identity is now: `attrs` replace what the token said about it.
    pub fn with_attrs(
        &self,
        attrs: &crate::revocation::IdentityAttrs,
    ) -> Result<Principal, DenyCode> {
        let p = Principal {
            kind: attrs.kind.unwrap_or(self.kind),
            tenant: attrs.tenant.clone(),
            roles: attrs.roles.clone(),
            scopes: attrs.scopes.clone(),
            groups: attrs.groups.clone(),
            devices: attrs.devices.clone(),
            ..self.clone()
        };
        p.validate()?;
        Ok(p)
    }

    /// Check every name against the safe alphabets.
    pub fn validate(&self) -> Result<(), DenyCode> {
        let names_ok = is_safe_name(&self.id)
            && self.tenant.as_deref().is_none_or(is_safe_name)
            && self.devices.iter().all(|d| is_safe_name(d))
            && self.devices.len() <= 1024;
        let labels_ok = [&self.roles, &self.scopes, &self.groups]
            .into_iter()
            .all(|v| v.len() <= 64 && v.iter().all(|l| is_safe_label(l)));
        if names_ok && labels_ok {
            Ok(())
        } else {
            Err(DenyCode::InvalidPrincipal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Principal {
        Principal {
            id: "dev-ABC".into(),
            kind: IdentityType::Device,
            tenant: Some("t1".into()),
            roles: vec![],
            scopes: vec!["mqtt.admin".into()],
            groups: vec![],
            devices: vec![],
            client_id: None,
            protocol: Protocol::Mqtt,
        }
    }

    #[test]
    fn hostile_names_are_refused() {
        assert!(base().validate().is_ok());
        for bad in ["a/b", "+", "#", "a.b", "*", ">", "", "a b", "ü"] {
            let mut p = base();
            p.id = bad.into();
            assert_eq!(p.validate(), Err(DenyCode::InvalidPrincipal), "{bad:?}");
            let mut p = base();
            p.tenant = Some(bad.into());
            assert!(p.validate().is_err(), "tenant {bad:?}");
        }
        let mut p = base();
        p.id = "x".repeat(129);
        assert!(p.validate().is_err());
        let mut p = base();
        p.devices = vec!["dev-1/#".into()];
        assert!(p.validate().is_err());
    }

    #[test]
    fn serializes_with_type_field() {
        let v = serde_json::to_value(base()).unwrap();
        assert_eq!(v["type"], "device");
        assert_eq!(v["protocol"], "mqtt");
    }
}
