//! Time as a dependency: handlers ask the state's clock, so tests move time instead of sleeping.
//! The clock is the runtime's one [`Clock`], shared with the MQTT broker and the callout.

pub use broker_auth_runtime::clock::{Clock, ManualClock, SystemClock};

/// RFC 3339 UTC, the API's timestamp format.
pub fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}
