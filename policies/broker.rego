# Grants: what a principal may publish and subscribe, in MQTT pattern syntax.
#
# Evaluated once per connection (or token); brokers then check every message against these
# patterns without running Rego. NATS receives the same patterns translated (`/`->`.`, `+`->`*`,
# `#`->`>`), plus the NATS-only subjects under "nats".
#
# Input: {"principal": {"id", "type", "tenant", "roles", "scopes", "groups", "devices", "protocol"}}
package broker

import rego.v1

# Name of the JetStream stream holding sensor commands (RavenXcope scheme).
command_stream := "RXC_CMD"

grants := grants_for(input.principal)

grants_for(p) := {
	"superuser": is_superuser(p),
	"publish": sort([t | some t in publish_patterns(p)]),
	"subscribe": sort([t | some t in subscribe_patterns(p)]),
	"nats": {
		"publish": sort([s | some s in nats_publish(p)]),
		"subscribe": sort([s | some s in nats_subscribe(p)]),
		"allow_responses": allow_responses(p),
	},
}

# Style note: every helper is a comprehension or a plain expression; no function has a `default`
# or an `else`. regorus 0.14's compiled RVM evaluates those differently from the interpreter (it
# returns undefined), and the loader refuses to serve the RVM when the two disagree.

# --- superusers: bypass every topic check, as in the celine contract ---------------------------

superuser_scopes := {"mqtt.admin"}

superuser_groups := {"admin", "mqtt.admin"}

superuser_marks(p) := {s | some s in object.get(p, "scopes", []); s in superuser_scopes} | {g | some g in object.get(p, "groups", []); g in superuser_groups}

is_superuser(p) := count(superuser_marks(p)) > 0

has_role(p, r) if r in object.get(p, "roles", [])

# --- devices and gateways ------------------------------------------------------------------------

# A gateway acts for itself and for the devices its identity metadata lists.
acts_for(p) := {p.id | p.type == "device"} | {d | p.type == "gateway"; some d in array.concat([p.id], object.get(p, "devices", []))}

device_publish(p) := {sprintf("devices/%s/#", [d]) | some d in acts_for(p)}

device_subscribe(p) := {sprintf("devices/%s/cmd/#", [d]) | some d in acts_for(p)}

# --- people and services: what their roles grant inside their tenant -----------------------------
# role "reader": subscribe tenants/<tenant>/#; role "writer": publish and subscribe there.

tenant_types := {"user", "developer", "integration", "internal", "admin", "root"}

tenant_of(p) := t if {
	p.type in tenant_types
	t := object.get(p, "tenant", "")
	t != ""
}

tenant_publish(p) := {sprintf("tenants/%s/#", [t]) | has_role(p, "writer"); t := tenant_of(p)}

tenant_subscribe(p) := {sprintf("tenants/%s/#", [t]) | some r in ["reader", "writer"]; has_role(p, r); t := tenant_of(p)}

# --- the RavenXcope scheme: rxc.<tenant>.<sensor>.cmd|status -------------------------------------
# role "sensor" (a provisioned sensor: its id is the sensor id, its tenant the tenant),
# role "backend" (commands out, status in, every tenant), role "control-admin" (JetStream admin).

sensor_tenant(p) := t if {
	has_role(p, "sensor")
	t := object.get(p, "tenant", "")
	t != ""
}

rxc_publish(p) := {sprintf("rxc/%s/%s/status", [t, p.id]) | t := sensor_tenant(p)} | {"rxc/+/+/cmd" | has_role(p, "backend")}

rxc_subscribe(p) := {"rxc/+/+/status" | has_role(p, "backend")}

# --- all MQTT-syntax patterns --------------------------------------------------------------------

publish_patterns(p) := ((device_publish(p) | tenant_publish(p)) | rxc_publish(p))

subscribe_patterns(p) := ((device_subscribe(p) | tenant_subscribe(p)) | rxc_subscribe(p))

# --- NATS-only subjects --------------------------------------------------------------------------

# Where a tenant account reaches the CONTROL account's JetStream API (the provisioner's service
# imports map this prefix onto CONTROL's `$JS.API`; a JetStream client uses it as its API prefix).
control_js_prefix := "JS.CONTROL.API"

# A sensor may drive its own durable pull consumer and nothing else of JetStream: directly (the
# stream in its own account) or through the CONTROL prefix (operator mode, one account per tenant).
sensor_js_api(p) := {s |
	t := sensor_tenant(p)
	c := sprintf("cmd-%s-%s", [t, p.id])
	some s in [
		sprintf("$JS.API.CONSUMER.MSG.NEXT.%s.%s", [command_stream, c]),
		sprintf("$JS.API.CONSUMER.INFO.%s.%s", [command_stream, c]),
		sprintf("%s.CONSUMER.MSG.NEXT.%s.%s", [control_js_prefix, command_stream, c]),
		sprintf("%s.CONSUMER.INFO.%s.%s", [control_js_prefix, command_stream, c]),
		sprintf("$JS.ACK.%s.%s.>", [command_stream, c]),
	]
}

nats_publish(p) := sensor_js_api(p) | {"$JS.API.>" | has_role(p, "control-admin")}

# Request/reply needs the client's own inbox: everyone who is granted anything gets it.
inbox_roles := {"sensor", "backend", "control-admin"}

needs_inbox(p) := count(acts_for(p)) + count({r | some r in object.get(p, "roles", []); r in inbox_roles}) + count({t | t := tenant_of(p)}) > 0

nats_subscribe(p) := {"_INBOX.>" | needs_inbox(p)}

# Devices and gateways may answer requests sent to their command subjects.
allow_responses(p) := p.type in {"device", "gateway"}
