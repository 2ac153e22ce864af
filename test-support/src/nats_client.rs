//! NATS clients for tests: connect with a token and see what the server says (permission
//! violations, disconnects) on a channel; wait for events and conditions without blocking the
//! async runtime the code under test shares.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// Events of a client, as text: `error: …` for server errors, `disconnected`, …
pub type Events = mpsc::UnboundedReceiver<String>;

/// Connect with `token` (no reconnects, so a refused or cut connection stays visible).
pub async fn token_client(
    url: &str,
    token: &str,
) -> Result<(async_nats::Client, Events), async_nats::ConnectError> {
    observed(
        async_nats::ConnectOptions::with_token(token.to_owned()),
        url,
    )
    .await
}

/// Connect with the text of a `.creds` file (no reconnects).
pub async fn creds_client(
    url: &str,
    creds: &str,
) -> Result<(async_nats::Client, Events), async_nats::ConnectError> {
    let opts = async_nats::ConnectOptions::with_credentials(creds).map_err(|e| {
        async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::Authentication, e)
    })?;
    observed(opts, url).await
}

async fn observed(
    opts: async_nats::ConnectOptions,
    url: &str,
) -> Result<(async_nats::Client, Events), async_nats::ConnectError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = opts
        .max_reconnects(Some(0))
        .event_callback(move |ev| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(match ev {
                    async_nats::Event::ServerError(e) => format!("error: {e}"),
                    async_nats::Event::Disconnected => "disconnected".into(),
                    other => other.to_string(),
                });
            }
        })
        .connect(url)
        .await?;
    Ok((client, rx))
}

/// Wait for an event containing `needle` (case-insensitive); panics after `within`.
pub async fn expect_event(rx: &mut Events, needle: &str, within: Duration) -> String {
    let needle = needle.to_lowercase();
    tokio::time::timeout(within, async {
        while let Some(ev) = rx.recv().await {
            if ev.to_lowercase().contains(&needle) {
                return ev;
            }
        }
        panic!("event channel closed before {needle:?}")
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} event within {within:?}"))
}

/// Poll `cond` every 20 ms until it holds or `within` passes, yielding to the runtime between.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}
