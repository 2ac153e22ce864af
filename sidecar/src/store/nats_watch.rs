//! The JetStream backend's change feeds: what other processes sharing the store wrote, for the
//! enforcement state this process keeps in memory. Revocations come from an ordered consumer of
//! the revocation stream from the last sequence this process applied (none is skipped, even
//! across a reconnect); signing keys, the live policy and bans from a KV watch of their keys,
//! which says only "reload this" (the reload reads the store, so a missed watch entry costs
//! nothing once the next one, or the resync after a restart of the watch, arrives).

use std::time::Duration;

use async_nats::jetstream::consumer;
use broker_auth::shared_store::{POLICY_LIVE, SIGNING_KEYS};
use futures_util::StreamExt;
use tokio::sync::mpsc::UnboundedSender;

use super::StoreChange;
use super::codec::decode;
use super::nats_kv::{Conn, NatsKvStore};

/// How long a failed watch waits before it starts again.
const RETRY: Duration = Duration::from_millis(500);

impl NatsKvStore {
    /// Start following the store; the receiver ends when the store is dropped.
    pub(super) fn follow(&self, after: u64) -> tokio::sync::mpsc::UnboundedReceiver<StoreChange> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.spawn(watch_keys(self.conn.clone(), tx.clone()));
        self.spawn(watch_revocations(self.conn.clone(), after, tx));
        rx
    }
}

fn change_of(key: &str) -> Option<StoreChange> {
    match key.split('.').next() {
        Some("sigkey") => Some(StoreChange::SigningKeys),
        Some("policy") => Some(StoreChange::Policy),
        Some("ban") => Some(StoreChange::Bans),
        _ => None,
    }
}

async fn watch_keys(c: Conn, tx: UnboundedSender<StoreChange>) {
    let mut first = true;
    while !tx.is_closed() {
        match c
            .state()
            .watch_many([SIGNING_KEYS, POLICY_LIVE, "ban.>"])
            .await
        {
            Ok(mut watch) => {
                // Whatever changed while no watch ran: reload all three once.
                if !first {
                    for ch in [
                        StoreChange::SigningKeys,
                        StoreChange::Policy,
                        StoreChange::Bans,
                    ] {
                        let _ = tx.send(ch);
                    }
                }
                while let Some(entry) = watch.next().await {
                    match entry {
                        Ok(e) => {
                            if let Some(ch) = change_of(&e.key)
                                && tx.send(ch).is_err()
                            {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "store watch failed; restarting it");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "store watch not started; retrying"),
        }
        first = false;
        tokio::time::sleep(RETRY).await;
    }
}

async fn watch_revocations(c: Conn, mut after: u64, tx: UnboundedSender<StoreChange>) {
    while !tx.is_closed() {
        let consumer = c
            .revocation_stream()
            .create_consumer(consumer::push::OrderedConfig {
                deliver_subject: c.client.new_inbox(),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                ..Default::default()
            })
            .await;
        let messages = match consumer {
            Ok(consumer) => consumer.messages().await,
            Err(e) => {
                tracing::warn!(error = %e, "revocation feed not followed; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "revocation feed not followed; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        while let Some(m) = messages.next().await {
            let Ok(m) = m else { break };
            let Ok(seq) = m.info().map(|i| i.stream_sequence) else {
                continue;
            };
            after = seq;
            match decode("revocations", &m.payload) {
                Ok(rec) => {
                    if tx.send(StoreChange::Revocation(seq, rec)).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::error!(error = %e, seq, "undecodable revocation skipped"),
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}
