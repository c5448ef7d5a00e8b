#!/bin/sh
# One-shot seed for the docker-compose Vault (dev mode, root token "root"):
# waits for Vault, writes job-manager's config secret (KV v2 at
# secret/job-manager, read by the app at secret/data/job-manager), and sets up
# the service's policy (job-manager-policy.hcl beside this script) and AppRole
# with the same commands as docs/vault.md, for trying VAULT_ROLE_ID/VAULT_SECRET_ID.
# Keys mirror the service's environment names. Development values only: no
# secret of a real service belongs here. `npm run test:vault` runs this script
# against a real Vault and starts the service on what it wrote.
#
# An existing secret is left alone (operator changes survive a re-run);
# set FORCE=1 to overwrite it.
set -eu

export VAULT_ADDR="${VAULT_ADDR:-http://vault:8200}"
export VAULT_TOKEN="${VAULT_TOKEN:-root}"
SECRET="secret/job-manager"
WAIT_SECONDS="${WAIT_SECONDS:-60}"

echo "waiting for Vault at ${VAULT_ADDR}"
waited=0
until vault status >/dev/null 2>&1; do
  waited=$((waited + 1))
  if [ "$waited" -ge "$WAIT_SECONDS" ]; then
    echo "Vault at ${VAULT_ADDR} not ready after ${WAIT_SECONDS} s" >&2
    exit 1
  fi
  sleep 1
done

if vault kv get "$SECRET" >/dev/null 2>&1 && [ "${FORCE:-0}" != "1" ]; then
  echo "${SECRET} exists; leaving it as it is (FORCE=1 overwrites)"
else
  vault kv put "$SECRET" \
    WORKER_COUNT=5 \
    FETCH_INTERVAL_MS=10000 \
    MESSAGE_MAX_LENGTH=160 \
    WEBHOOK_URL=http://sink:3999/webhook \
    WEBHOOK_AUTH_HEADER=x-ins-auth-key \
    WEBHOOK_AUTH_VALUE=dev-only-webhook-key \
    WEBHOOK_TIMEOUT_MS=5000 \
    WEBHOOK_MAX_ATTEMPTS=5 \
    LOG_LEVEL=info >/dev/null
  echo "wrote ${SECRET}"
fi

# The service's policy (read on the config secret, renew and look up its own
# token), and an AppRole bound to it: docs/vault.md explains each parameter.
vault policy write job-manager "$(dirname "$0")/job-manager-policy.hcl" >/dev/null
if ! vault auth list -format=json | grep -q '"approle/"'; then
  vault auth enable approle >/dev/null
fi
vault write auth/approle/role/job-manager \
  token_policies=job-manager token_no_default_policy=true \
  token_ttl=1h token_max_ttl=24h \
  secret_id_ttl=0 secret_id_num_uses=0 >/dev/null
echo "AppRole auth/approle/role/job-manager ready (policy job-manager)"
echo "done"
