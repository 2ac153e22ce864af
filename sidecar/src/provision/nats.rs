//! The provisioner's NATS side: pushing re-signed account JWTs to running servers, and the
//! JetStream command stream with one durable pull consumer per sensor.
//!
//! nats-server needs our resolver before it starts, and these connections need nats-server, so
//! nothing here blocks start-up: a background task keeps (re)connecting, and a push or consumer
//! that cannot happen yet is logged and done at the next connect (the resolver always serves the
//! current JWT, so a server that restarts picks it up anyway).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_nats::jetstream;

use super::{CONTROL, Provisioner, SYS, consumer_name};
use crate::error::SidecarError;

/// How long our own credentials live; they are re-minted on every reconnect.
const OWN_CREDS_TTL: i64 = 7 * 86_400;

/// Connections to nats-server as the SYS user (claims pushes) and the control admin (JetStream).
#[derive(Default)]
pub struct NatsSide {
    sys: ArcSwapOption<async_nats::Client>,
    control: ArcSwapOption<async_nats::Client>,
}

fn nats_err(e: impl Into<crate::error::Cause>) -> SidecarError {
    SidecarError::unavailable_from("nats", e)
}

impl NatsSide {
    /// Push an account JWT to every server of the cluster (`$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE`)
    /// and wait for one server's answer.
    pub async fn push(&self, public_key: &str, jwt: &str) -> Result<(), SidecarError> {
        let Some(sys) = self
            .sys
            .load_full()
            .filter(|c| c.connection_state() == async_nats::connection::State::Connected)
        else {
            return Err(SidecarError::unavailable(
                "nats: not connected to nats-server",
            ));
        };
        let subject = format!("$SYS.REQ.ACCOUNT.{public_key}.CLAIMS.UPDATE");
        let reply = tokio::time::timeout(
            Duration::from_secs(3),
            sys.request(subject, jwt.to_owned().into()),
        )
        .await
        .map_err(|e| {
            SidecarError::unavailable_from("nats: no server answered the claims update", e)
        })?
        .map_err(nats_err)?;
        let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
        match body.get("error") {
            Some(e) => Err(SidecarError::unavailable(format!(
                "nats: claims update refused: {e}"
            ))),
            None => Ok(()),
        }
    }

    /// Ensure the command stream and the durable pull consumer of one sensor.
    pub async fn ensure_consumer(
        &self,
        stream: &str,
        tenant: &str,
        sensor: &str,
    ) -> Result<(), SidecarError> {
        let Some(control) = self
            .control
            .load_full()
            .filter(|c| c.connection_state() == async_nats::connection::State::Connected)
        else {
            return Err(SidecarError::unavailable(
                "nats: no control connection to nats-server",
            ));
        };
        let js = jetstream::new((*control).clone());
        let s = ensure_stream(&js, stream).await?;
        let name = consumer_name(tenant, sensor);
        s.get_or_create_consumer(
            &name,
            jetstream::consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: format!("rxc.{tenant}.{sensor}.cmd"),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .map_err(nats_err)?;
        Ok(())
    }
}

async fn ensure_stream(
    js: &jetstream::Context,
    name: &str,
) -> Result<jetstream::stream::Stream, SidecarError> {
    js.get_or_create_stream(jetstream::stream::Config {
        name: name.to_owned(),
        subjects: vec!["rxc.*.*.cmd".into()],
        retention: jetstream::stream::RetentionPolicy::WorkQueue,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(nats_err)
}

async fn connect(url: &str, creds: &str) -> Result<async_nats::Client, SidecarError> {
    async_nats::ConnectOptions::with_credentials(creds)
        .map_err(nats_err)?
        .retry_on_initial_connect()
        .connect(url)
        .await
        .map_err(nats_err)
}

/// Connect (retrying until `shutdown`), then keep the connections for the provisioner. With
/// `ensure_stream`, the command stream and every stored sensor's consumer are ensured.
pub async fn run(
    side: Arc<NatsSide>,
    provisioner: Arc<Provisioner>,
    url: String,
    control_creds: Option<String>,
    ensure_stream_at_start: bool,
    now: impl Fn() -> i64,
) {
    let sys_creds = match provisioner.ephemeral_user(SYS, None, OWN_CREDS_TTL, now()) {
        Ok(c) => c,
        Err(e) => return tracing::error!(error = %e, "cannot mint the SYS user"),
    };
    let control_creds = match control_creds {
        Some(c) => Ok(c),
        None => {
            let admin = Provisioner::principal("control-admin", None, "control-admin");
            provisioner.ephemeral_user(CONTROL, Some(&admin), OWN_CREDS_TTL, now())
        }
    };
    match connect(&url, &sys_creds).await {
        Ok(c) => {
            side.sys.store(Some(Arc::new(c)));
            tracing::info!(%url, "provisioner connected to NATS as the system user");
        }
        Err(e) => tracing::warn!(error = %e, "provisioner: no system connection"),
    }
    let control = match control_creds {
        Ok(creds) => connect(&url, &creds).await,
        Err(e) => Err(e),
    };
    let control = match control {
        Ok(c) => Arc::new(c),
        Err(e) => return tracing::warn!(error = %e, "provisioner: no control connection"),
    };
    side.control.store(Some(control.clone()));
    if ensure_stream_at_start {
        // The connection retries in the background; JetStream requests need it up.
        while control.connection_state() != async_nats::connection::State::Connected {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let stream = provisioner.names.command_stream.clone();
        match ensure_stream(&jetstream::new((*control).clone()), &stream).await {
            Ok(_) => tracing::info!(%stream, "command stream ensured"),
            Err(e) => tracing::warn!(error = %e, %stream, "command stream not ensured"),
        }
        let sensors = provisioner.sensors().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "sensors unreadable; no consumer ensured");
            vec![]
        });
        for (tenant, sensor) in sensors {
            if let Err(e) = side.ensure_consumer(&stream, &tenant, &sensor).await {
                tracing::warn!(error = %e, %tenant, %sensor, "consumer not ensured");
            }
        }
    }
}
