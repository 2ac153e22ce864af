# The per-request decision (the celine `mqtt_auth` shape), written in terms of the grants so the
# two shapes can never disagree (a test in broker-auth proves it over generated principals).
#
# Input: {"principal": {...}, "clientid": "...", "topic": "...", "acc": 1|2|4,
#         "action": "read" | "publish" | "subscribe"}
package broker.mqtt.acl

import data.broker
import rego.v1

default allow := false

g := broker.grants_for(input.principal)

allow if {
	g.superuser
	well_formed(input.action, input.topic)
}

allow if {
	input.action == "publish"
	valid_topic(input.topic)
	some pattern in g.publish
	covers(pattern, input.topic)
}

allow if {
	input.action == "read"
	valid_topic(input.topic)
	some pattern in g.subscribe
	covers(pattern, input.topic)
}

allow if {
	input.action == "subscribe"
	f := inner_filter(input.topic)
	valid_filter(f)
	some pattern in g.subscribe
	covers(pattern, f)
}

well_formed("publish", t) if valid_topic(t)

well_formed("read", t) if valid_topic(t)

well_formed("subscribe", t) if valid_filter(inner_filter(t))

# --- MQTT topic rules ----------------------------------------------------------------------------

# MQTT limits a topic to 65535 bytes of UTF-8; `count` of a string counts characters, so a topic
# of multi-byte characters would pass it past the limit (found by fuzz/policy_input). Rego has no
# byte length; base64 has one: 4 characters per started 3 bytes, and 65535 = 3 * 21845, so
# n <= 65535 bytes exactly when the encoding has at most 4 * 21845 = 87380 characters.
within_mqtt_length(s) if count(base64.encode(s)) <= 87380

valid_topic(t) if {
	is_string(t)
	t != ""
	within_mqtt_length(t)
	not contains(t, "+")
	not contains(t, "#")
	not contains(t, "\u0000")
}

valid_filter(f) if {
	is_string(f)
	f != ""
	within_mqtt_length(f)
	not contains(f, "\u0000")
	levels := split(f, "/")
	n := count(levels)
	every i, l in levels {
		valid_level(l, i, n)
	}
}

valid_level(l, _, _) if {
	not contains(l, "+")
	not contains(l, "#")
}

valid_level("+", _, _) := true

valid_level("#", i, n) if i == n - 1

# `$share/<group>/<filter>` is checked by its inner filter.
inner_filter(t) := inner if {
	startswith(t, "$share/")
	parts := split(t, "/")
	count(parts) >= 3
	group := parts[1]
	group != ""
	not contains(group, "+")
	not contains(group, "#")
	inner := concat("/", array.slice(parts, 2, count(parts)))
	inner != ""
}

inner_filter(t) := t if not startswith(t, "$share/")

# covers(pattern, filter): every topic the filter can match is matched by the pattern.
# A wildcard in the first level never matches a `$`-topic.
covers(pattern, filter) if {
	gl := split(pattern, "/")
	fl := split(filter, "/")
	not dollar_blocked(gl, fl)
	levels_cover(gl, fl)
}

dollar_blocked(gl, fl) if {
	startswith(fl[0], "$")
	gl[0] in {"+", "#"}
}

# A pattern ending in `#` also matches its parent level (`a/#` matches `a`).
levels_cover(gl, fl) if {
	n := count(gl)
	gl[n - 1] == "#"
	count(fl) >= n - 1
	every i, _ in gl {
		prefix_level_ok(gl, fl, i)
	}
}

levels_cover(gl, fl) if {
	n := count(gl)
	gl[n - 1] != "#"
	count(fl) == n
	every i, l in gl {
		level_covers(l, fl[i])
	}
}

prefix_level_ok(gl, _, i) if i == count(gl) - 1

prefix_level_ok(gl, fl, i) if {
	i < count(gl) - 1
	level_covers(gl[i], fl[i])
}

# `x/#` also matches the parent `x`, which `x/+/#` does not; but when that parent is not a valid
# topic (nothing at the top, or the empty topic before a leading `/`) the two match the same.
prefix_level_ok(gl, fl, i) if {
	gl[i] == "+"
	fl[i] == "#"
	count(gl) == i + 2
	parent_invalid(fl, i)
}

parent_invalid(_, 0) := true

parent_invalid(fl, 1) if fl[0] == ""

level_covers(l, f) if {
	l == f
	f != "#"
}

level_covers("+", f) if f != "#"
