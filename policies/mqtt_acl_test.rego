package broker.mqtt.acl_test

import data.broker.mqtt.acl
import rego.v1

device := {"id": "dev-D1", "type": "device", "tenant": "t1", "roles": [], "scopes": [], "groups": [], "protocol": "mqtt"}

su := object.union(device, {"scopes": ["mqtt.admin"]})

req(p, action, topic) := {"principal": p, "clientid": "c1", "topic": topic, "acc": 2, "action": action}

test_device_publishes_own_telemetry if acl.allow with input as req(device, "publish", "devices/dev-D1/telemetry")

test_device_cannot_publish_for_another if not acl.allow with input as req(device, "publish", "devices/dev-D2/telemetry")

test_device_subscribes_own_commands if acl.allow with input as req(device, "subscribe", "devices/dev-D1/cmd/#")

test_wider_filter_is_refused if not acl.allow with input as req(device, "subscribe", "devices/+/cmd/#")

test_shared_subscription_checks_inner_filter if acl.allow with input as req(device, "subscribe", "$share/g1/devices/dev-D1/cmd/+")

test_sys_topics_only_for_superusers if {
	not acl.allow with input as req(device, "subscribe", "$SYS/#")
	acl.allow with input as req(su, "subscribe", "$SYS/#")
}

test_wildcards_in_publish_topic_are_refused if not acl.allow with input as req(su, "publish", "devices/#")

test_malformed_filter_is_refused if not acl.allow with input as req(su, "subscribe", "a/#/b")

test_read_follows_subscribe_grants if {
	acl.allow with input as req(device, "read", "devices/dev-D1/cmd/reboot")
	not acl.allow with input as req(device, "read", "devices/dev-D1/telemetry")
}

# 65535 is a limit in bytes: 15 bytes of prefix and 21840 three-byte characters are exactly
# 65535 bytes; one character more is over, though 21856 characters are far below 65535.
long_topic(n) := concat("", ["devices/dev-D1/", concat("", [c | some _ in numbers.range(1, n); c := "€"])])

test_topic_length_is_counted_in_bytes if {
	acl.allow with input as req(device, "publish", long_topic(21840))
	not acl.allow with input as req(device, "publish", long_topic(21841))
}
