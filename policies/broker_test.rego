# Unit tests of the shipped policy. Run: `sidecar policy test policies/` (also run by cargo test).
package broker_test

import data.broker
import rego.v1

device := {"id": "dev-D1", "type": "device", "tenant": "t1", "roles": [], "scopes": [], "groups": [], "protocol": "mqtt"}

gateway := {"id": "gw-G1", "type": "gateway", "tenant": "t1", "roles": [], "scopes": [], "groups": [], "devices": ["dev-A", "dev-B"], "protocol": "mqtt"}

admin_scope := object.union(device, {"scopes": ["mqtt.admin"]})

admin_group := {"id": "usr-U1", "type": "user", "tenant": "t1", "roles": [], "scopes": [], "groups": ["admin"], "protocol": "mqtt"}

reader := {"id": "usr-R1", "type": "user", "tenant": "t1", "roles": ["reader"], "scopes": [], "groups": [], "protocol": "mqtt"}

writer := object.union(reader, {"id": "int-W1", "type": "integration", "roles": ["writer"]})

sensor := {"id": "s1", "type": "device", "tenant": "t1", "roles": ["sensor"], "scopes": [], "groups": [], "protocol": "nats"}

backend := {"id": "svc-B1", "type": "internal", "roles": ["backend"], "scopes": [], "groups": [], "protocol": "nats"}

control := {"id": "svc-C1", "type": "internal", "roles": ["control-admin"], "scopes": [], "groups": [], "protocol": "nats"}

nobody := {"id": "usr-N1", "type": "user", "roles": [], "scopes": [], "groups": [], "protocol": "mqtt"}

test_device_publishes_under_its_own_id if {
	g := broker.grants with input.principal as device
	g.publish == ["devices/dev-D1/#"]
	g.subscribe == ["devices/dev-D1/cmd/#"]
	not g.superuser
	g.nats.allow_responses
	g.nats.subscribe == ["_INBOX.>"]
}

test_gateway_acts_for_its_devices if {
	g := broker.grants with input.principal as gateway
	g.publish == ["devices/dev-A/#", "devices/dev-B/#", "devices/gw-G1/#"]
	"devices/dev-A/cmd/#" in g.subscribe
}

test_superuser_by_scope_and_by_group if {
	g1 := broker.grants with input.principal as admin_scope
	g1.superuser
	g2 := broker.grants with input.principal as admin_group
	g2.superuser
	g3 := broker.grants with input.principal as device
	not g3.superuser
}

test_roles_grant_inside_the_tenant_only if {
	r := broker.grants with input.principal as reader
	r.subscribe == ["tenants/t1/#"]
	r.publish == []
	w := broker.grants with input.principal as writer
	w.publish == ["tenants/t1/#"]
	w.subscribe == ["tenants/t1/#"]
}

test_a_role_without_a_tenant_grants_nothing if {
	g := broker.grants with input.principal as object.union(reader, {"tenant": ""})
	g.publish == []
	g.subscribe == []
}

test_nothing_for_nobody if {
	g := broker.grants with input.principal as nobody
	g.publish == []
	g.subscribe == []
	g.nats.publish == []
	not g.superuser
}

test_sensor_follows_the_rxc_scheme if {
	g := broker.grants with input.principal as sensor
	"rxc/t1/s1/status" in g.publish
	"$JS.API.CONSUMER.MSG.NEXT.RXC_CMD.cmd-t1-s1" in g.nats.publish
	"JS.CONTROL.API.CONSUMER.MSG.NEXT.RXC_CMD.cmd-t1-s1" in g.nats.publish
	not "JS.CONTROL.API.CONSUMER.MSG.NEXT.RXC_CMD.cmd-t1-s2" in g.nats.publish
	"$JS.ACK.RXC_CMD.cmd-t1-s1.>" in g.nats.publish
	g.nats.subscribe == ["_INBOX.>"]
	not "rxc/+/+/cmd" in g.publish
}

test_backend_commands_every_sensor if {
	g := broker.grants with input.principal as backend
	g.publish == ["rxc/+/+/cmd"]
	g.subscribe == ["rxc/+/+/status"]
	g.nats.subscribe == ["_INBOX.>"]
}

test_control_admin_drives_jetstream if {
	g := broker.grants with input.principal as control
	g.nats.publish == ["$JS.API.>"]
	g.nats.subscribe == ["_INBOX.>"]
	g.publish == []
}
