"""One Eclipse paho connection that records what the broker did, for the MQTT test scripts.

Every wait is for a broker event (CONNACK, SUBACK, PUBACK, a message, a disconnect), bounded by
WAIT seconds; nothing sleeps.
"""
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

WAIT = 10


class Conn:
    """One paho connection that records what the broker did."""

    def __init__(self, host, port, proto, client_id, token, clean):
        v5 = proto == 5
        self.host, self.port = host, port
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
        self.retained = []
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
            if m.retain:
                self.retained.append(m.topic)
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
            self.c.connect(self.host, self.port, keepalive=30, clean_start=self.clean, properties=props)
        else:
            self.c.connect(self.host, self.port, keepalive=30)
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

    def publish(self, topic, body, retain=False):
        info = self.c.publish(topic, body.encode(), qos=1, retain=retain)
        self.wait_for(lambda: info.mid in self.acks, "PUBACK")

    def until_message(self, topic, body):
        """All messages received so far, once `body` has arrived on `topic`."""
        self.wait_for(lambda: [topic, body] in self.messages, f"{body!r} on {topic}")
        return list(self.messages)

    def leave(self):
        self.c.disconnect()
        self.gone.wait(WAIT)
        self.c.loop_stop()
