#!/bin/sh
# Provision a tenant, one sensor and the backend through the sidecar's NATS provisioner, and write
# their .creds files. Needs: curl, jq; the sidecar serving with OPERATOR_SEED_PATH and
# BACKEND_SHARED_SECRET (see README, "NATS: the provisioner and account resolver").
#
#   SIDECAR_URL=http://127.0.0.1:8080 BACKEND_SHARED_SECRET=... ./examples/provision.sh t1 s1
set -eu
url=${SIDECAR_URL:-http://127.0.0.1:8080}
tenant=${1:?usage: provision.sh TENANT SENSOR}
sensor=${2:?usage: provision.sh TENANT SENSOR}
secret=${BACKEND_SHARED_SECRET:?set BACKEND_SHARED_SECRET}

post() {
  curl -fsS -X POST "$url$1" -H "X-Backend-Shared-Secret: $secret" \
       -H 'Content-Type: application/json' -d "$2"
}

# Create-or-return: running this twice gives the same account and the same sensor credentials.
post /accounts "{\"tenantId\": \"$tenant\", \"name\": \"$tenant\"}" | jq '{accountId, accountPubKey, created}'
post /users "{\"tenantId\": \"$tenant\", \"sensorId\": \"$sensor\"}" | jq -r .creds > "$tenant-$sensor.creds"
post /backend-user '{}' | jq -r .creds > backend.creds
chmod 600 "$tenant-$sensor.creds" backend.creds
echo "wrote $tenant-$sensor.creds and backend.creds"
echo "revoke the sensor later with:"
echo "  curl -X POST $url/revoke -H 'X-Backend-Shared-Secret: ...' -d '{\"accountId\": \"$tenant\", \"userPubKey\": \"U...\"}'"
