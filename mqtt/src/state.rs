//! What the embedded broker keeps beyond one message: the choice of a shared subscription's
//! member, and retained messages. Both are rmqtt's own plugins, registered in process with
//! their configuration passed inline (no plugin directory to ship).
//!
//! Why the shared-subscription plugin is not optional: with rmqtt's `shared-subscription`
//! feature on and no strategy registered, the router asks the default strategy for a member of
//! each `$share/<group>/…` group, and the default answers "none". The SUBSCRIBE succeeds and
//! every message to the group is dropped without a word. The plugin's round-robin answers.
//!
//! Retained messages are checked where everything else is: storing one is a PUBLISH with the
//! retain flag, so it needs the publish grant (the PUBLISH hook); receiving one needs a
//! subscription whose filter matches it, and a filter is granted only when the grants cover it
//! (the SUBSCRIBE hook), so every topic it matches is readable. A retained message stays after
//! its publisher is disabled or deleted, as in every MQTT broker: it belongs to the topic, and
//! whoever may publish there replaces or clears it (an empty retained payload clears it).

use std::path::PathBuf;

use rmqtt::context::ServerContext;

use crate::MqttConfig;

/// rmqtt's shared-subscription plugin, by the name it reads its configuration under.
const SHARED: &str = "rmqtt-shared-subscription";
/// rmqtt's retainer plugin.
const RETAINER: &str = "rmqtt-retainer";

/// Where retained messages are kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RetainedStore {
    /// In memory, gone with the process (tests, benchmarks).
    #[default]
    Memory,
    /// A sled database in this directory, kept across restarts. rmqtt's retainer writes it in
    /// batches behind the PUBACK: a retained message acknowledged in the last moments before a
    /// `kill -9` can be lost (the previous one for its topic is then what a subscriber gets).
    Sled(PathBuf),
}

/// The plugins' configurations, by plugin name, as the TOML text rmqtt reads.
pub(crate) fn configs(config: &MqttConfig) -> Vec<(&'static str, String)> {
    let storage = match &config.retained {
        RetainedStore::Memory => "[storage]\ntype = \"ram\"\n".to_owned(),
        RetainedStore::Sled(dir) => format!(
            "[storage]\ntype = \"sled\"\n[storage.sled]\npath = {}\ncache_capacity = \"64MB\"\n",
            toml_string(&dir.display().to_string())
        ),
    };
    vec![
        (SHARED, "strategy = \"round_robin\"\n".to_owned()),
        (
            RETAINER,
            format!(
                "max_retained_messages = {}\nmax_payload_size = \"{}B\"\n{storage}",
                config.max_retained, config.max_packet_size
            ),
        ),
    ]
}

/// Register and start the plugins on `scx` (built with [`configs`]), before any listener.
pub(crate) async fn start(scx: &ServerContext) -> rmqtt::Result<()> {
    // Started now (`default_startup`) and fixed for the process (`immutable`): nothing may stop
    // them at run time, a stopped strategy would drop shared messages again.
    rmqtt_shared_subscription::register(scx, true, true).await?;
    rmqtt_retainer::register(scx, true, true).await?;
    Ok(())
}

/// A TOML basic string (paths may hold quotes and backslashes).
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_with_quotes_stays_one_toml_string() {
        assert_eq!(toml_string(r#"/a "b"\c"#), r#""/a \"b\"\\c""#);
        assert_eq!(toml_string("x\ny"), "\"x\\u000Ay\"");
    }

    #[test]
    fn the_retainer_is_told_its_store_and_limits() {
        let c = MqttConfig {
            retained: RetainedStore::Sled("/var/lib/x".into()),
            max_retained: 7,
            ..Default::default()
        };
        let (_, retainer) = configs(&c)
            .into_iter()
            .find(|(n, _)| *n == RETAINER)
            .unwrap();
        assert!(retainer.contains("type = \"sled\""), "{retainer}");
        assert!(retainer.contains("path = \"/var/lib/x\""), "{retainer}");
        assert!(retainer.contains("max_retained_messages = 7"), "{retainer}");
    }
}
