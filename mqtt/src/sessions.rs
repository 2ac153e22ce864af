//! Who a client id belongs to, and what a resumed session may keep.
//!
//! rmqtt keys sessions by client id alone: a CONNECT naming a held client id kicks the holder
//! and, with clean-session false (v5: clean-start false), inherits its subscriptions, queued and
//! in-flight messages. Left alone that lets any identity take over any other's session by
//! guessing its client id. So a session belongs to the identity (`sub`) that made it:
//!
//! - The authentication hook asks [`holder`] and refuses a CONNECT whose client id holds a live
//!   or persisted session of another identity (reason `client_id_in_use`), before rmqtt kicks
//!   anybody: the holder stays connected and the newcomer learns nothing of its session.
//! - [`OwnedShared`] wraps rmqtt's session registry. Its entries' `kick` runs under the client
//!   id's lock, right before a takeover, so it checks ownership again (the race-free check: two
//!   CONNECTs can pass the hook before either holds a session) and filters what the new session
//!   inherits against the grants it has now ([`inherit`]): grants can shrink between two
//!   connections of the same identity (policy change, new token), and rmqtt restores
//!   subscriptions and delivers queued messages without asking any ACL hook.
//!
//! rmqtt 0.24 maps an authentication hook's answer to only two CONNACK codes (bad credentials,
//! not authorized) and calls no hook when it refuses a handshake, so "identifier rejected"
//! (v3.1.1 code 2, v5 0x85) cannot be sent from here: the refusal is "not authorized" (5 / 0x87),
//! or "server unavailable" (3 / 0x88) from the kick in the rare race.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use rmqtt::context::ServerContext;
use rmqtt::inflight::MomentStatus;
use rmqtt::session::{OfflineInfo, Session};
use rmqtt::shared::{Entry, Shared};
use rmqtt::types::{
    ForwardedCount, ForwardedRecipients, From, Id, IsAdmin, OfflineSession, Publish, Reason,
    SessionStatus, SubRelations, SubRelationsMap, SubsSearchParams, SubsSearchResult, Subscribe,
    SubscribeReturn, To, Tx, Unsubscribe,
};

use crate::SessionAuth;
use crate::hooks::ATTR;
use crate::parked::Parked;
use crate::stats::MqttStats;
use broker_auth::decision::DenyCode;
use broker_auth::grants::{Action, CompiledGrants};

/// Who holds a client id right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Holder {
    /// No session, live or persisted.
    Free,
    /// A session made by this identity (token `sub`).
    Owner(String),
    /// A session we cannot attribute (it bypassed our hooks): nobody may take it.
    Unknown,
}

/// The ownership rule: a client id is free, or it is the newcomer's own.
pub(crate) fn may_take(holder: &Holder, newcomer: &str) -> bool {
    match holder {
        Holder::Free => true,
        Holder::Owner(o) => o == newcomer,
        Holder::Unknown => false,
    }
}

/// The holder of `session` (the one rmqtt has under a client id), if any.
pub(crate) async fn holder(session: Option<Session>, parked: &Parked) -> Holder {
    let Some(s) = session else {
        return Holder::Free;
    };
    let owner = |attrs: &rmqtt::types::ExtraAttrs| {
        attrs
            .get::<Arc<SessionAuth>>(ATTR)
            .map(|a| a.conn.subject.clone())
    };
    let from_attrs = match s.extra_attrs.try_read() {
        Ok(attrs) => owner(&attrs),
        Err(_) => owner(&*s.extra_attrs.read().await),
    };
    // Between rmqtt registering a session and our `ClientConnected` hook filling its attributes,
    // the authentication is still parked under the session's connection id.
    match from_attrs.or_else(|| parked.parked(&s.id).map(|a| a.conn.subject.clone())) {
        Some(o) => Holder::Owner(o),
        None => Holder::Unknown,
    }
}

/// What a resumed session lost because its current grants no longer cover it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Dropped {
    /// Inherited subscription filters removed.
    pub subscriptions: Vec<String>,
    /// Queued or in-flight messages not delivered.
    pub messages: usize,
}

/// Keep only what `grants` covers of a session being taken over: subscriptions the client could
/// make now, messages on topics it could receive now. QoS 2 messages whose PUBLISH was already
/// received (only the PUBREL is owed) are kept: nothing new is delivered by finishing them.
pub(crate) fn inherit(info: &mut OfflineInfo, grants: &CompiledGrants) -> Dropped {
    let mut dropped = Dropped::default();
    if grants.superuser() {
        return dropped;
    }
    info.subscriptions.retain(|(filter, _)| {
        let keep = grants.allows(Action::Subscribe, filter);
        if !keep {
            dropped.subscriptions.push(filter.to_string());
        }
        keep
    });
    let readable = |p: &Publish| grants.allows(Action::Read, &p.topic);
    let before = info.offline_messages.len() + info.inflight_messages.len();
    info.offline_messages.retain(|(_, p)| readable(p));
    info.inflight_messages
        .retain(|m| matches!(m.status, MomentStatus::UnComplete) || readable(&m.publish));
    dropped.messages = before - info.offline_messages.len() - info.inflight_messages.len();
    dropped
}

/// What the wrappers need: the parked authentications, the counters, and the router.
pub(crate) struct Guard {
    pub(crate) parked: Arc<Parked>,
    pub(crate) stats: Arc<MqttStats>,
    pub(crate) scx: ServerContext,
}

impl Guard {
    /// Ownership check and inheritance filter for the takeover `entry` is about to perform.
    async fn kick(
        &self,
        entry: &mut dyn Entry,
        clean_start: bool,
        clear_subscriptions: bool,
        is_admin: IsAdmin,
    ) -> rmqtt::Result<OfflineSession> {
        let id = entry.id();
        let Some(newcomer) = self.parked.parked(&id) else {
            // Only handshakes kick, and only after our authentication hook parked a decision.
            return Err(rmqtt::Error::msg(
                "takeover without an authenticated CONNECT",
            ));
        };
        let held = holder(entry.session(), &self.parked).await;
        if !may_take(&held, &newcomer.conn.subject) {
            self.parked.unpark(&id);
            self.stats.refuse(DenyCode::ClientIdInUse.as_str());
            tracing::warn!(
                client_id = %id.client_id,
                holder = ?held,
                "mqtt takeover of another identity's session refused"
            );
            return Err(rmqtt::Error::msg("client id held by another identity"));
        }
        let mut out = entry
            .kick(clean_start, clear_subscriptions, is_admin)
            .await?;
        if let OfflineSession::Exist(Some(info)) = &mut out {
            let dropped = inherit(info, &newcomer.conn.grants);
            self.forget_routes(info, &dropped.subscriptions).await;
            count(&self.stats, &dropped);
            if dropped != Dropped::default() {
                tracing::info!(
                    client_id = %id.client_id,
                    subscriptions = ?dropped.subscriptions,
                    messages = dropped.messages,
                    "resumed mqtt session: inherited state outside the current grants dropped"
                );
            }
        }
        Ok(out)
    }

    /// The router still routes the old session's filters to this client id; the dropped ones
    /// must stop before the new session exists.
    async fn forget_routes(&self, info: &OfflineInfo, filters: &[String]) {
        let router = self.scx.extends.router().await;
        for f in filters {
            if let Err(e) = router.remove(f, info.id.clone()).await {
                tracing::warn!(error = %e, filter = %f, "mqtt router kept a dropped subscription");
            }
        }
    }
}

/// rmqtt's session registry with ownership enforced at takeover; everything else delegates.
pub(crate) struct OwnedShared {
    pub(crate) inner: Box<dyn Shared>,
    pub(crate) guard: Arc<Guard>,
}

struct OwnedEntry {
    inner: Box<dyn Entry>,
    guard: Arc<Guard>,
}

#[async_trait]
impl Entry for OwnedEntry {
    async fn try_lock(&self) -> rmqtt::Result<Box<dyn Entry>> {
        Ok(Box::new(OwnedEntry {
            inner: self.inner.try_lock().await?,
            guard: self.guard.clone(),
        }))
    }
    fn id(&self) -> Id {
        self.inner.id()
    }
    fn id_same(&self) -> Option<bool> {
        self.inner.id_same()
    }
    async fn set(&mut self, session: Session, tx: Tx) -> rmqtt::Result<()> {
        self.inner.set(session, tx).await
    }
    async fn remove(&mut self) -> rmqtt::Result<Option<(Session, Tx)>> {
        self.inner.remove().await
    }
    async fn remove_with(&mut self, id: &Id) -> rmqtt::Result<Option<(Session, Tx)>> {
        self.inner.remove_with(id).await
    }
    async fn kick(
        &mut self,
        clean_start: bool,
        clear_subscriptions: bool,
        is_admin: IsAdmin,
    ) -> rmqtt::Result<OfflineSession> {
        let guard = self.guard.clone();
        guard
            .kick(
                self.inner.as_mut(),
                clean_start,
                clear_subscriptions,
                is_admin,
            )
            .await
    }
    async fn online(&self) -> bool {
        self.inner.online().await
    }
    async fn is_connected(&self) -> bool {
        self.inner.is_connected().await
    }
    fn session(&self) -> Option<Session> {
        self.inner.session()
    }
    fn exist(&self) -> bool {
        self.inner.exist()
    }
    fn tx(&self) -> Option<Tx> {
        self.inner.tx()
    }
    async fn subscribe(&self, subscribe: &Subscribe) -> rmqtt::Result<SubscribeReturn> {
        self.inner.subscribe(subscribe).await
    }
    async fn unsubscribe(&self, unsubscribe: &Unsubscribe) -> rmqtt::Result<bool> {
        self.inner.unsubscribe(unsubscribe).await
    }
    async fn publish(&self, from: From, p: Publish) -> Result<(), (From, Publish, Reason)> {
        self.inner.publish(from, p).await
    }
    async fn subscriptions(&self) -> Option<Vec<SubsSearchResult>> {
        self.inner.subscriptions().await
    }
}

type Failed = Vec<(To, From, Publish, Reason)>;

#[async_trait]
impl Shared for OwnedShared {
    fn entry(&self, id: Id) -> Box<dyn Entry> {
        Box::new(OwnedEntry {
            inner: self.inner.entry(id),
            guard: self.guard.clone(),
        })
    }
    fn exist(&self, client_id: &str) -> bool {
        self.inner.exist(client_id)
    }
    async fn forwards(
        &self,
        msg_id: Option<rmqtt::types::MsgID>,
        from: From,
        publish: Publish,
    ) -> Result<ForwardedCount, (ForwardedCount, Failed)> {
        self.inner.forwards(msg_id, from, publish).await
    }
    async fn forwards_and_get_shareds(
        &self,
        from: From,
        publish: Publish,
    ) -> Result<(SubRelationsMap, ForwardedRecipients), (ForwardedRecipients, Failed)> {
        self.inner.forwards_and_get_shareds(from, publish).await
    }
    async fn forwards_to(
        &self,
        from: From,
        publish: &Publish,
        relations: SubRelations,
        msg_id: Option<rmqtt::types::MsgID>,
    ) -> Result<ForwardedRecipients, (ForwardedRecipients, Failed)> {
        self.inner
            .forwards_to(from, publish, relations, msg_id)
            .await
    }
    fn iter(&self) -> Box<dyn Iterator<Item = Box<dyn Entry>> + Sync + Send + '_> {
        self.inner.iter()
    }
    fn random_session(&self) -> Option<Session> {
        self.inner.random_session()
    }
    async fn session_status(&self, client_id: &str) -> Option<SessionStatus> {
        self.inner.session_status(client_id).await
    }
    async fn client_states_count(&self) -> usize {
        self.inner.client_states_count().await
    }
    fn sessions_count(&self) -> usize {
        self.inner.sessions_count()
    }
    async fn query_subscriptions(&self, q: &SubsSearchParams) -> Vec<SubsSearchResult> {
        self.inner.query_subscriptions(q).await
    }
    async fn subscriptions_count(&self) -> usize {
        self.inner.subscriptions_count().await
    }
    fn grpc_enable(&self) -> bool {
        self.inner.grpc_enable()
    }
    fn node_name(&self, id: rmqtt::types::NodeId) -> String {
        self.inner.node_name(id)
    }
    async fn check_health(&self) -> rmqtt::Result<rmqtt::types::HealthInfo> {
        self.inner.check_health().await
    }
    async fn health_status(&self) -> rmqtt::Result<rmqtt::types::NodeHealthStatus> {
        self.inner.health_status().await
    }
    fn operation_is_busy(&self) -> bool {
        self.inner.operation_is_busy()
    }
    async fn retain_load_with(
        &self,
        topic_filter: &rmqtt::types::TopicFilter,
        cb: Arc<dyn rmqtt::shared::RetainLoadCallback>,
    ) -> rmqtt::Result<Vec<(rmqtt::types::NodeId, rmqtt::types::MsgID)>> {
        self.inner.retain_load_with(topic_filter, cb).await
    }
    async fn retain_set_broadcast(
        &self,
        topic: &rmqtt::types::TopicName,
        retain: &rmqtt::types::Retain,
        expiry_interval: Option<std::time::Duration>,
    ) -> rmqtt::Result<()> {
        self.inner
            .retain_set_broadcast(topic, retain, expiry_interval)
            .await
    }
}

/// Install [`OwnedShared`] around the registry rmqtt built, before any listener runs.
pub(crate) async fn install(guard: Arc<Guard>) {
    let scx = guard.scx.clone();
    let mut shared = scx.extends.shared_mut().await;
    let inner = std::mem::replace(
        &mut *shared,
        Box::new(rmqtt::shared::DefaultShared::new(None)),
    );
    *shared = Box::new(OwnedShared { inner, guard });
}

/// Counted on [`MqttStats`] so `/metrics` shows what resumed sessions lost.
pub(crate) fn count(stats: &MqttStats, d: &Dropped) {
    stats
        .inherited_subscriptions_dropped
        .fetch_add(d.subscriptions.len() as u64, Ordering::Relaxed);
    stats
        .inherited_messages_dropped
        .fetch_add(d.messages as u64, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_id_is_free_or_its_owners() {
        assert!(may_take(&Holder::Free, "dev-a"));
        assert!(may_take(&Holder::Owner("dev-a".into()), "dev-a"));
        assert!(!may_take(&Holder::Owner("adm-root".into()), "dev-a"));
        assert!(!may_take(&Holder::Unknown, "dev-a"));
        assert!(!may_take(&Holder::Owner("dev-a".into()), "dev-a2"));
    }
}
