//! The rmqtt hook handlers: one decision at CONNECT, pattern matches afterwards.
//!
//! - `ClientAuthenticate`: the password is the access token. The same
//!   [`broker_auth_runtime::LiveAuth::authorize`] as the NATS callout and the HTTP routes produces
//!   the grants; the Last Will topic is checked against them here because rmqtt never checks
//!   wills, and a client id that holds another identity's session is refused (see
//!   [`crate::sessions`]). The result is parked under the connection's `Id` (there is no session
//!   yet).
//! - `ClientConnected` (runs before CONNACK): the parked grants move into the session's own
//!   `extra_attrs` and the session is admitted to the runtime's registry, which ends it on expiry,
//!   revocation or narrowed grants. A connection that arrives without parked grants is closed:
//!   nothing reaches the ACL hooks unauthenticated.
//! - `ClientSubscribeCheckAcl` / `MessagePublishCheckAcl`: a match against the compiled grants,
//!   never a Rego evaluation. A session without grants is denied (rmqtt would allow); every
//!   denial is counted by its reason code, which a v5 PUBACK/PUBREC also carries.
//! - `ClientDisconnected` / `SessionTerminated`: the registry forgets the session.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use async_trait::async_trait;
use broker_auth::decision::{Authorized, Decision, DenyCode};
use broker_auth::enforce::LiveConn;
use broker_auth::grants::Action;
use broker_auth::principal::Protocol;
use broker_auth_runtime::Runtime;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::session::Session;
use rmqtt::types::{
    AuthResult, ConnectInfo, LastWill, Message, PublishAclResult, Reason, SubscribeAclResult,
};

use crate::parked::Parked;
use crate::sessions;
use crate::stats::MqttStats;
use crate::{SessionAuth, SessionEnder};

/// Key of our entry in a session's `extra_attrs`.
pub(crate) const ATTR: &str = "broker_auth";

pub(crate) struct Hooks {
    pub(crate) runtime: Runtime,
    pub(crate) parked: Arc<Parked>,
    pub(crate) stats: Arc<MqttStats>,
    pub(crate) scx: ServerContext,
    pub(crate) door: Arc<crate::front::Door>,
}

/// rmqtt wants one boxed handler per registration; they all share one [`Hooks`].
pub(crate) struct Handle(pub(crate) Arc<Hooks>);

#[async_trait]
impl Handler for Handle {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let h = &self.0;
        match param {
            Parameter::ClientAuthenticate(ci) => (
                false,
                Some(HookResult::AuthResult(h.authenticate(ci).await)),
            ),
            Parameter::ClientConnected(s) => {
                h.connected(s).await;
                (true, acc)
            }
            Parameter::ClientSubscribeCheckAcl(s, sub) => {
                let t0 = Instant::now();
                let denied = h.check(s, Action::Subscribe, &sub.topic_filter).await;
                h.stats.acl_latency.observe(t0.elapsed());
                let r = match denied {
                    None => SubscribeAclResult::new_success(sub.opts.qos(), None),
                    Some(code) => {
                        h.stats.deny(Action::Subscribe, code);
                        SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                    }
                };
                (false, Some(HookResult::SubscribeAclResult(r)))
            }
            Parameter::MessagePublishCheckAcl(s, p) => {
                let t0 = sampled();
                let denied = h.check(s, Action::Publish, &p.topic).await;
                h.observe_acl(t0);
                let r = match denied {
                    None => PublishAclResult::allow(),
                    Some(code) => {
                        h.stats.deny(Action::Publish, code);
                        // A topic name that is not well-formed (a wildcard, U+0000) is a protocol
                        // violation (MQTT-4.7.1, 4.7.3-2): the connection is closed, not answered.
                        let close = code == DenyCode::InvalidTopic;
                        PublishAclResult::rejected(close, Some(code.as_str().into()))
                    }
                };
                (false, Some(HookResult::PublishAclResult(r)))
            }
            Parameter::ClientDisconnected(s, _) | Parameter::SessionTerminated(s, _) => {
                h.gone(s).await;
                (true, acc)
            }
            _ => (true, acc),
        }
    }
}

/// One ACL call in [`SAMPLE`] is timed: two clock reads and a histogram update would otherwise
/// cost about as much as the check itself.
const SAMPLE: u32 = 32;

thread_local! {
    static CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn sampled() -> Option<Instant> {
    CALLS.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        (n % SAMPLE == 0).then(Instant::now)
    })
}

fn will_topic<'a>(w: &'a LastWill<'_>) -> &'a str {
    match w {
        LastWill::V3(w) => &w.topic,
        LastWill::V5(w) => &w.topic,
    }
}

impl Hooks {
    async fn authenticate(&self, ci: &ConnectInfo) -> AuthResult {
        let t0 = Instant::now();
        // Only connections a front admitted (caps, bans, handshake deadline) reach a decision:
        // rmqtt's own listener is on loopback, where a PROXY header could claim any address.
        if !self.door.connect_seen(ci.id().remote_addr) {
            self.refuse(ci, "not_via_front");
            return AuthResult::NotAuthorized;
        }
        let result = self.decide(ci).await;
        self.stats.connect_latency.observe(t0.elapsed());
        if matches!(result, AuthResult::BadUsernameOrPassword) {
            self.hold_failure(ci).await;
        }
        result
    }

    /// A failed authentication counts against the client's address; over its allowance the
    /// refusal is held back before CONNACK, then the address is locked out at the socket.
    async fn hold_failure(&self, ci: &ConnectInfo) {
        let Some(ip) = ci.id().remote_addr.map(|a| a.ip()) else {
            return;
        };
        let hold = self.door.doorman.failed(ip);
        if !hold.is_zero() {
            self.stats.connects_held.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(hold).await;
        }
    }

    async fn decide(&self, ci: &ConnectInfo) -> AuthResult {
        // MQTT 3.1.1 (MQTT-3.1.2-22): a password without the user name flag is a protocol
        // violation, however good the token in it; MQTT 5 allows it.
        if matches!(ci, ConnectInfo::V3(..)) && ci.username().is_none() && ci.password().is_some() {
            self.refuse(ci, "password_without_username");
            return AuthResult::BadUsernameOrPassword;
        }
        let token = ci.password().and_then(|p| std::str::from_utf8(p).ok());
        let client_id: &str = ci.client_id();
        let decision =
            self.runtime
                .live
                .authorize(self.runtime.now(), token, Protocol::Mqtt, Some(client_id));
        match decision {
            Decision::Permit(p) => self.admit(ci, p.value).await,
            Decision::Deny(d) => {
                if d.code == DenyCode::PolicyError {
                    tracing::error!(detail = %d.detail, client_id, "mqtt connect: the policy failed");
                }
                self.refuse(ci, d.code.as_str());
                if d.code.is_authentication_failure() {
                    AuthResult::BadUsernameOrPassword
                } else {
                    AuthResult::NotAuthorized
                }
            }
        }
    }

    /// A verified, granted CONNECT: its Will must be granted and its client id free or its own.
    async fn admit(&self, ci: &ConnectInfo, a: Authorized) -> AuthResult {
        let will_ok = ci
            .last_will()
            .is_none_or(|w| a.grants.allows(Action::Publish, will_topic(&w)));
        if !will_ok {
            self.refuse(ci, "will_not_granted");
            return AuthResult::NotAuthorized;
        }
        let session = self.holder_session(ci).await;
        let held = sessions::holder(session, &self.parked).await;
        if !sessions::may_take(&held, &a.claims.sub) {
            self.refuse(ci, DenyCode::ClientIdInUse.as_str());
            return AuthResult::NotAuthorized;
        }
        let superuser = a.grants.superuser();
        self.parked.park(
            ci.id().clone(),
            Arc::new(SessionAuth::new(LiveConn::from(&a))),
        );
        self.stats.connects_accepted.fetch_add(1, Ordering::Relaxed);
        AuthResult::Allow(superuser, None)
    }

    /// The session rmqtt holds under the connecting client id. `try_read` first: the registry
    /// lock is only ever written at start-up, and an awaited acquire yields to the scheduler
    /// (tokio's cooperative budget), which a connect storm pays for in latency.
    async fn holder_session(&self, ci: &ConnectInfo) -> Option<Session> {
        let lookup = |shared: &dyn rmqtt::shared::Shared| shared.entry(ci.id().clone()).session();
        match self.scx.extends.shared.try_read() {
            Ok(shared) => lookup(shared.as_ref()),
            Err(_) => lookup(self.scx.extends.shared().await.as_ref()),
        }
    }

    fn observe_acl(&self, t0: Option<Instant>) {
        if let Some(t0) = t0 {
            self.stats.acl_latency.observe(t0.elapsed());
        }
    }

    fn refuse(&self, ci: &ConnectInfo, reason: &'static str) {
        self.stats.refuse(reason);
        tracing::info!(
            reason,
            client_id = %ci.client_id(),
            remote = ?ci.ipaddress(),
            "mqtt connect refused"
        );
    }

    async fn connected(&self, s: &Session) {
        // Read the parked grants without taking them: until the attributes below are written,
        // the parked entry is what tells a concurrent CONNECT who owns this session.
        let Some(auth) = self.parked.parked(&s.id) else {
            // Authenticated by something other than our hook: refuse to serve it.
            tracing::warn!(client_id = %s.id.client_id, "mqtt session without grants; closing");
            if let Some(tx) = self.scx.extends.shared().await.entry(s.id.clone()).tx() {
                let _ = tx.unbounded_send(Message::Closed(Reason::from_static("no grants")));
            }
            return;
        };
        s.extra_attrs
            .write()
            .await
            .insert(ATTR.into(), auth.clone());
        self.parked.unpark(&s.id);
        let Some(tx) = self.scx.extends.shared().await.entry(s.id.clone()).tx() else {
            tracing::warn!(client_id = %s.id.client_id, "mqtt session has no channel");
            return;
        };
        let ender = Arc::new(SessionEnder {
            tx,
            stats: self.stats.clone(),
            auth: auth.clone(),
        });
        let id = self.runtime.enforcer.admit(auth.conn.clone(), ender);
        let _ = auth.id.set(id);
        self.stats.live_sessions.fetch_add(1, Ordering::Relaxed);
    }

    async fn gone(&self, s: &Session) {
        let auth = s
            .extra_attrs
            .read()
            .await
            .get::<Arc<SessionAuth>>(ATTR)
            .cloned();
        let Some(auth) = auth else { return };
        if auth.gone.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Some(id) = auth.id.get() {
            self.runtime.enforcer.forget(*id);
            self.stats.live_sessions.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// `None` when allowed, else the reason code.
    async fn check(&self, s: &Session, action: Action, topic: &str) -> Option<DenyCode> {
        let denial = |attrs: &rmqtt::types::ExtraAttrs| match attrs.get::<Arc<SessionAuth>>(ATTR) {
            None => Some(DenyCode::MissingToken),
            Some(a) => a
                .grants
                .load()
                .check(action, topic)
                .denial()
                .map(|d| d.code),
        };
        // Only `connected` ever writes, once, before the first message: the lock is free here.
        // `try_read` does not yield to the scheduler the way an awaited acquire does (tokio's
        // cooperative budget), which cost more than the check itself under load.
        match s.extra_attrs.try_read() {
            Ok(attrs) => denial(&attrs),
            Err(_) => denial(&*s.extra_attrs.read().await),
        }
    }
}
