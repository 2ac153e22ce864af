"""A second MQTT implementation (Eclipse paho) against the sidecar's embedded broker.

usage: mqtt_paho.py HOST TCP_PORT WS_PORT TLS_PORT CA_PEM DEVICE_ID TOKEN
Prints one JSON object of observations; the Rust test asserts on it.
"""
import json
import sys
import threading

import paho.mqtt.client as mqtt

HOST, TCP, WS, TLS, CA, DEV, TOKEN = sys.argv[1:8]
TCP, WS, TLS = int(TCP), int(WS), int(TLS)
WAIT = 10


def client(proto, transport, cid):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=proto, transport=transport)
    if transport == "websockets":
        c.ws_set_options(path="/mqtt")
    return c


def connack(proto, transport, password, port, tls=False):
    """CONNACK reason of one connect attempt: (value, text)."""
    c = client(proto, transport, "paho-connack")
    if tls:
        c.tls_set(ca_certs=CA)
    if password is not None:
        c.username_pw_set("device", password)
    done = threading.Event()
    out = {}

    def on_connect(_c, _u, _flags, rc, _props):
        out["rc"] = (rc.value, str(rc))
        done.set()

    c.on_connect = on_connect
    c.connect(HOST, port, keepalive=30)
    c.loop_start()
    if not done.wait(WAIT):
        out["rc"] = (None, "no CONNACK")
    c.disconnect()
    c.loop_stop()
    return out["rc"]


def session_v5_over_ws():
    """Subscribe (one allowed, one foreign filter), publish allowed and denied at QoS1."""
    c = client(mqtt.MQTTv5, "websockets", "paho-ws")
    c.username_pw_set("device", TOKEN)
    ev = {k: threading.Event() for k in ("conn", "sub", "msg", "pub_denied", "pub_ok")}
    out = {"messages": []}
    mids = {}

    def on_connect(_c, _u, _f, rc, _p):
        out["connect"] = str(rc)
        ev["conn"].set()

    def on_subscribe(_c, _u, _mid, rcs, _p):
        out["suback"] = [r.value for r in rcs]
        ev["sub"].set()

    def on_message(_c, _u, m):
        out["messages"].append([m.topic, m.payload.decode()])
        ev["msg"].set()

    def on_publish(_c, _u, mid, rc, _p):
        which = mids.get(mid)
        out[which] = rc.value
        ev[which].set()

    c.on_connect, c.on_subscribe, c.on_message, c.on_publish = on_connect, on_subscribe, on_message, on_publish
    c.connect(HOST, WS, keepalive=30)
    c.loop_start()
    ev["conn"].wait(WAIT)
    c.subscribe([(f"devices/{DEV}/cmd/#", 1), ("devices/dev-SOMEONEELSE0000/cmd/#", 1)])
    ev["sub"].wait(WAIT)
    info = c.publish("tenants/t1/secret", b"denied", qos=1)
    mids[info.mid] = "pub_denied"
    ev["pub_denied"].wait(WAIT)
    info = c.publish(f"devices/{DEV}/cmd/echo", b"hello", qos=1)
    mids[info.mid] = "pub_ok"
    ev["pub_ok"].wait(WAIT)
    ev["msg"].wait(WAIT)
    c.disconnect()
    c.loop_stop()
    return out


result = {
    "v311_tcp_good": connack(mqtt.MQTTv311, "tcp", TOKEN, TCP),
    "v311_tcp_bad": connack(mqtt.MQTTv311, "tcp", TOKEN[:-8] + "AAAAAAAA", TCP),
    "v311_tcp_anonymous": connack(mqtt.MQTTv311, "tcp", None, TCP),
    "v5_ws_bad": connack(mqtt.MQTTv5, "websockets", "not-a-token", WS),
    "v5_tls_good": connack(mqtt.MQTTv5, "tcp", TOKEN, TLS, tls=True),
    "v5_tls_bad": connack(mqtt.MQTTv5, "tcp", "x", TLS, tls=True),
    "v5_ws_session": session_v5_over_ws(),
}
print(json.dumps(result))
