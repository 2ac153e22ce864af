"""Session takeover and resumed sessions, tried with Eclipse paho against the sidecar's broker.

usage: mqtt_sessions.py PHASE HOST PORT PROTO ARGS...
  takeover CLIENT_ID ADMIN_TOKEN PUBLISHER_TOKEN PUBLISHER_ID INTRUDER_TOKEN
  shrink-prepare CLIENT_ID DEVICE_TOKEN DEVICE_ID ADMIN_TOKEN
  shrink-resume CLIENT_ID DEVICE_TOKEN DEVICE_ID ADMIN_TOKEN
PROTO is 3 (v3.1.1) or 5. Prints one JSON object of observations; the Rust test asserts on it.
Every wait is for a broker event (CONNACK, SUBACK, PUBACK, a message, a disconnect), bounded by
WAIT seconds; nothing sleeps.
"""
import json
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

PHASE, HOST, PORT, PROTO = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ARGS = sys.argv[5:]
WAIT = 10


class Conn:
    """One paho connection that records what the broker did."""

    def __init__(self, client_id, token, clean):
        v5 = PROTO == 5
        kw = {} if v5 else {"clean_session": clean}
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            **kw,
        )
        self.c.username_pw_set("x", token)
        self.clean, self.v5 = clean, v5
        self.connack = threading.Event()
        self.gone = threading.Event()
        self.cond = threading.Condition()
        self.rc, self.present, self.messages, self.acks = None, None, [], {}
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda *_a: self.gone.set()
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_ack
        self.c.on_publish = lambda _c, _u, mid, _rc, _p: self._ack(mid, True)

    def _on_connect(self, _c, _u, flags, rc, _p):
        self.rc, self.present = rc.value, bool(flags.session_present)
        self.connack.set()

    def _on_message(self, _c, _u, m):
        with self.cond:
            self.messages.append([m.topic, m.payload.decode()])
            self.cond.notify_all()

    def _on_ack(self, _c, _u, mid, rcs, _p):
        self._ack(mid, [r.value for r in rcs])

    def _ack(self, mid, value):
        with self.cond:
            self.acks[mid] = value
            self.cond.notify_all()

    def connect(self):
        """CONNECT and wait for the CONNACK; returns (reason code, session present)."""
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0 if self.clean else 600
            self.c.connect(HOST, PORT, keepalive=30, clean_start=self.clean, properties=props)
        else:
            self.c.connect(HOST, PORT, keepalive=30)
        self.c.loop_start()
        if not self.connack.wait(WAIT):
            raise SystemExit("no CONNACK")
        if self.rc != 0:
            # A refused CONNECT is followed by the broker closing the connection.
            self.gone.wait(WAIT)
            self.c.loop_stop()
        return self.rc, self.present

    def wait_for(self, pred, what):
        with self.cond:
            if not self.cond.wait_for(pred, WAIT):
                raise SystemExit(f"timed out waiting for {what}")

    def subscribe(self, filters):
        _, mid = self.c.subscribe([(f, 1) for f in filters])
        self.wait_for(lambda: mid in self.acks, "SUBACK")
        return self.acks[mid]

    def publish(self, topic, body):
        info = self.c.publish(topic, body.encode(), qos=1)
        self.wait_for(lambda: info.mid in self.acks, "PUBACK")

    def until_message(self, topic, body):
        """All messages received so far, once `body` has arrived on `topic`."""
        self.wait_for(lambda: [topic, body] in self.messages, f"{body!r} on {topic}")
        return list(self.messages)

    def leave(self):
        self.c.disconnect()
        self.gone.wait(WAIT)
        self.c.loop_stop()


def takeover(client_id, admin, publisher, publisher_id, intruder):
    out = {}
    topic = f"devices/{publisher_id}/telemetry"
    victim = Conn(client_id, admin, clean=False)
    out["victim_first"] = victim.connect()
    out["victim_suback"] = victim.subscribe(["#"])
    victim.leave()
    pub = Conn(f"{client_id}-pub", publisher, clean=True)
    pub.connect()
    pub.publish(topic, "queued")

    # The persisted session: refused, not present, nothing delivered.
    thief = Conn(client_id, intruder, clean=False)
    out["thief_offline"] = thief.connect()
    out["thief_offline_messages"] = thief.messages
    out["thief_clean"] = Conn(client_id, intruder, clean=True).connect()

    # The owner resumes it.
    victim = Conn(client_id, admin, clean=False)
    out["victim_resume"] = victim.connect()
    out["victim_queued"] = victim.until_message(topic, "queued")

    # The live session: the intruder is refused and the holder is not kicked.
    thief = Conn(client_id, intruder, clean=False)
    out["thief_online"] = thief.connect()
    out["thief_online_messages"] = thief.messages
    pub.publish(topic, "live")
    out["victim_live"] = victim.until_message(topic, "live")[-1]
    out["victim_kicked"] = victim.gone.is_set()
    victim.leave()
    pub.leave()
    return out


def shrink_prepare(client_id, token, device_id, admin):
    dev = Conn(client_id, token, clean=False)
    out = {"connect": dev.connect()}
    cmd = f"devices/{device_id}/cmd"
    out["suback"] = [dev.subscribe([f"{cmd}/#"]), dev.subscribe([f"{cmd}/ota/#"])]
    dev.leave()
    pub = Conn(f"{client_id}-admin", admin, clean=True)
    pub.connect()
    pub.publish(f"{cmd}/reboot", "queued")
    pub.publish(f"{cmd}/ota/1", "queued")
    pub.leave()
    return out


def shrink_resume(client_id, token, device_id, admin):
    cmd = f"devices/{device_id}/cmd"
    dev = Conn(client_id, token, clean=False)
    out = {"connect": dev.connect()}
    out["queued"] = dev.until_message(f"{cmd}/ota/1", "queued")
    pub = Conn(f"{client_id}-admin", admin, clean=True)
    pub.connect()
    # The marker comes last from one publisher: anything routed before it has arrived with it.
    pub.publish(f"{cmd}/reboot", "live")
    pub.publish(f"{cmd}/ota/2", "marker")
    out["all"] = dev.until_message(f"{cmd}/ota/2", "marker")
    dev.leave()
    pub.leave()
    return out


PHASES = {"takeover": takeover, "shrink-prepare": shrink_prepare, "shrink-resume": shrink_resume}
print(json.dumps(PHASES[PHASE](*ARGS)))
