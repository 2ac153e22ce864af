//! The sidecar's HTTP feeds as the standalone callout reads them: its JWKS, and its revocation
//! feed (`GET /v1/revocations?since=`), which also carries identity changes.
//!
//! A page is applied whole or not at all: an entry this responder cannot read fails the poll
//! (and, if it goes on, makes the responder blind) instead of being skipped — a skipped
//! revocation would be a device admitted that should not be.

use broker_auth::UnixTime;
use broker_auth::revocation::IdentityAttrs;
use broker_auth::token::KeySet;
use broker_auth_runtime::LiveAuth;
use serde::Deserialize;

use crate::error::CalloutError;

/// One entry, as the sidecar serves it.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FeedEntry {
    /// A session id.
    Session { id: String, until: UnixTime },
    /// Every token of an identity issued up to `at`.
    Subject {
        id: String,
        at: UnixTime,
        until: UnixTime,
    },
    /// An identity's attributes since `at`.
    Identity {
        id: String,
        at: UnixTime,
        until: UnixTime,
        attrs: IdentityAttrs,
    },
}

/// One page of the feed.
#[derive(Debug, Deserialize)]
pub struct FeedPage {
    revocations: Vec<FeedEntry>,
    next: u64,
}

/// Where the feeds are, and the admin API key that reads the revocation feed.
pub struct FeedClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl std::fmt::Debug for FeedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// How long one poll may take before it counts as failed.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl FeedClient {
    /// Feeds of the sidecar at `base`.
    pub fn new(base: String, token: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .unwrap_or_default();
        FeedClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// The sidecar's verification keys.
    pub async fn jwks(&self) -> Result<KeySet, CalloutError> {
        let doc: serde_json::Value = self
            .http
            .get(format!("{}/.well-known/jwks.json", self.base))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(CalloutError::sidecar("JWKS"))?
            .json()
            .await
            .map_err(CalloutError::sidecar("JWKS"))?;
        KeySet::from_jwks(&doc).map_err(CalloutError::sidecar("JWKS"))
    }

    /// Revocations and identity changes after `since`.
    pub async fn revocations(&self, since: u64) -> Result<FeedPage, CalloutError> {
        self.http
            .get(format!("{}/v1/revocations?since={since}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(CalloutError::sidecar("revocation feed"))?
            .json()
            .await
            .map_err(CalloutError::sidecar("revocation feed"))
    }
}

/// Record a page in `live` (a successful poll at `now`); the cursor to ask from next.
pub fn apply(live: &LiveAuth, page: FeedPage, now: UnixTime) -> u64 {
    for e in page.revocations {
        match e {
            FeedEntry::Session { id, until } => live.revoke_session(&id, until),
            FeedEntry::Subject { id, at, until } => live.revoke_subject(&id, at, until),
            FeedEntry::Identity {
                id,
                at,
                until,
                attrs,
            } => live.update_identity(&id, at, attrs, until),
        }
    }
    live.feed_ok(now);
    page.next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_with_an_entry_we_cannot_read_is_refused_whole() {
        let ok: FeedPage = serde_json::from_value(serde_json::json!({
            "revocations": [
                {"seq": 1, "kind": "session", "id": "s1", "at": 1, "until": 9},
                {"seq": 2, "kind": "identity", "id": "usr-1", "at": 2, "until": 9,
                 "attrs": {"roles": ["reader"]}},
            ],
            "next": 2
        }))
        .unwrap();
        assert_eq!((ok.revocations.len(), ok.next), (2, 2));
        for bad in [
            serde_json::json!({"revocations": [{"kind": "teleport", "id": "x"}], "next": 1}),
            serde_json::json!({"revocations": [{"kind": "session"}], "next": 1}),
            serde_json::json!({"revocations": []}),
        ] {
            assert!(serde_json::from_value::<FeedPage>(bad).is_err());
        }
    }
}
