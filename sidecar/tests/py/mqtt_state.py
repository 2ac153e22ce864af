"""Shared subscriptions and retained messages, tried with Eclipse paho against the sidecar's broker.

usage: mqtt_state.py PHASE HOST PORT PROTO ARGS...
  shared DEVICE_TOKEN DEVICE_ID ADMIN_TOKEN N
  retain TOKEN TOPIC PAYLOAD
  late TOKEN MARKER_TOPIC FILTER...
PROTO is 3 (v3.1.1) or 5. Prints one JSON object of observations; the Rust test asserts on it.
"""
import json
import sys
import threading

import paho_conn

PHASE, HOST, PORT, PROTO = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ARGS = sys.argv[5:]


def Conn(client_id, token, clean=True):
    return paho_conn.Conn(HOST, PORT, PROTO, client_id, token, clean)


def shared(token, device_id, admin, n):
    """Two members of one group; N QoS 1 commands; what each member got."""
    n = int(n)
    members = [Conn(f"worker-{i}-v{PROTO}", token) for i in (1, 2)]
    # One condition for both, so a wait over the group wakes on either member's message.
    members[1].cond = members[0].cond
    out = {"suback": []}
    for m in members:
        m.connect()
        out["suback"].append(m.subscribe([f"$share/workers/devices/{device_id}/cmd/#"]))
    pub = Conn(f"boss-v{PROTO}", admin)
    pub.connect()
    for i in range(n):
        pub.publish(f"devices/{device_id}/cmd/job", f"job-{i}")
    total = lambda: sum(len(m.messages) for m in members)
    members[0].wait_for(lambda: total() >= n, f"{n} messages over the group")
    # A last message routed after them all: a duplicate of an earlier one would come before it.
    pub.publish(f"devices/{device_id}/cmd/job", "marker")
    marker = [f"devices/{device_id}/cmd/job", "marker"]
    members[0].wait_for(lambda: any(marker in m.messages for m in members), "the marker")
    out["received"] = [[body for _, body in m.messages if body != "marker"] for m in members]
    for m in members + [pub]:
        m.leave()
    return out


def retain(token, topic, payload):
    c = Conn(f"retainer-v{PROTO}", token)
    out = {"connect": c.connect()}
    c.publish(topic, payload, retain=True)
    c.leave()
    return out


def late(token, marker_topic, *filters):
    """A late subscriber: its SUBACK codes and what it got until the retained marker arrived."""
    c = Conn(f"late-v{PROTO}", token)
    out = {"connect": c.connect()}
    out["suback"] = [c.subscribe([f]) for f in filters]
    c.wait_for(lambda: marker_topic in c.retained, f"the retained marker {marker_topic}")
    # A broker sends a filter's retained messages in no set order: give the rest a moment (the
    # window in which something that should not arrive would show).
    threading.Event().wait(0.3)
    out["messages"] = sorted(m for m in c.messages if m[0] != marker_topic)
    out["retained"] = sorted(t for t in c.retained if t != marker_topic)
    c.leave()
    return out


PHASES = {"shared": shared, "retain": retain, "late": late}
print(json.dumps(PHASES[PHASE](*ARGS)))
