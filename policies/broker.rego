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

# --- superusers: bypass every topic check, as in the celine contract ---------------------------

superuser_scopes := {"mqtt.admin"}

superuser_groups := {"admin", "mqtt.admin"}

is_superuser(p) if {
	some s in object.get(p, "scopes", [])
	s in superuser_scopes
}

is_superuser(p) if {
	some g in object.get(p, "groups", [])
	g in superuser_groups
}

default is_superuser(_) := false

# --- publish -------------------------------------------------------------------------------------

publish_patterns(p) := (((device_publish(p) | gateway_publish(p)) | tenant_publish(p)) | rxc_publish(p))

device_publish(p) := {sprintf("devices/%s/#", [p.id])} if p.type == "device"

else := set()

gateway_publish(p) := {sprintf("devices/%s/#", [d]) | some d in array.concat([p.id], object.get(p, "devices", []))} if {
	p.type == "gateway"
}

else := set()

# --- subscribe -----------------------------------------------------------------------------------

subscribe_patterns(p) := (((device_subscribe(p) | gateway_subscribe(p)) | tenant_subscribe(p)) | rxc_subscribe(p))

device_subscribe(p) := {sprintf("devices/%s/cmd/#", [p.id])} if p.type == "device"

else := set()

gateway_subscribe(p) := {sprintf("devices/%s/cmd/#", [d]) | some d in array.concat([p.id], object.get(p, "devices", []))} if {
	p.type == "gateway"
}

else := set()

# --- people and services: what their roles grant inside their tenant -----------------------------
# role "reader": subscribe tenants/<tenant>/#; role "writer": publish tenants/<tenant>/#.

tenant_roles := {"user", "developer", "integration", "internal", "admin", "root"}

tenant_of(p) := t if {
	p.type in tenant_roles
	t := object.get(p, "tenant", "")
	t != ""
}

tenant_publish(p) := {sprintf("tenants/%s/#", [tenant_of(p)])} if "writer" in object.get(p, "roles", [])

else := set()

tenant_subscribe(p) := {sprintf("tenants/%s/#", [tenant_of(p)])} if {
	some r in object.get(p, "roles", [])
	r in {"reader", "writer"}
}

else := set()

# --- the RavenXcope scheme: rxc.<tenant>.<sensor>.cmd|status -------------------------------------
# role "sensor" (a provisioned sensor; its id is the sensor id, its tenant the tenant),
# role "backend" (commands out, status in, every tenant), role "control-admin" (JetStream admin).

has_role(p, r) if r in object.get(p, "roles", [])

sensor_tenant(p) := t if {
	has_role(p, "sensor")
	t := object.get(p, "tenant", "")
	t != ""
}

consumer_name(p) := sprintf("cmd-%s-%s", [sensor_tenant(p), p.id])

rxc_publish(p) := {sprintf("rxc/%s/%s/status", [sensor_tenant(p), p.id])} if sensor_tenant(p)

else := {"rxc/+/+/cmd"} if has_role(p, "backend")

else := set()

rxc_subscribe(p) := {"rxc/+/+/status"} if has_role(p, "backend")

else := set()

# --- NATS-only subjects --------------------------------------------------------------------------

# A sensor may drive its own durable pull consumer and nothing else of JetStream.
sensor_js_api(p) := {
	sprintf("$JS.API.CONSUMER.MSG.NEXT.%s.%s", [command_stream, consumer_name(p)]),
	sprintf("$JS.API.CONSUMER.INFO.%s.%s", [command_stream, consumer_name(p)]),
	sprintf("$JS.ACK.%s.%s.>", [command_stream, consumer_name(p)]),
} if sensor_tenant(p)

else := set()

control_admin_api(p) := {"$JS.API.>"} if has_role(p, "control-admin")

else := set()

nats_publish(p) := sensor_js_api(p) | control_admin_api(p)

# Request/reply needs the client's own inbox.
needs_inbox(p) if p.type in {"device", "gateway"}

needs_inbox(p) if has_role(p, "sensor")

needs_inbox(p) if has_role(p, "backend")

needs_inbox(p) if has_role(p, "control-admin")

needs_inbox(p) if tenant_of(p)

nats_subscribe(p) := {"_INBOX.>"} if needs_inbox(p)

else := set()

# Devices and gateways may answer requests sent to their command subjects.
allow_responses(p) if p.type in {"device", "gateway"}

default allow_responses(_) := false
