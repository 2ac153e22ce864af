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

import paho_conn

PHASE, HOST, PORT, PROTO = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ARGS = sys.argv[5:]


def Conn(client_id, token, clean):
    return paho_conn.Conn(HOST, PORT, PROTO, client_id, token, clean)


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
