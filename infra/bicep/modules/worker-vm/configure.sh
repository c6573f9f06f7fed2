#!/bin/bash
# The "configure" run command of every worker VM (worker-vm.bicep), run on each deployment
# with the template's current values as environment variables: WORKER_ENV (KEY=VALUE lines),
# SECRETS (SETTING=key-vault-secret-name lines), VAULT_URI, CLIENT_ID, TENANT_ID, REGISTRY,
# IMAGE (empty until the postdeploy hook built one). Then (re)starts one worker per GPU.
set -euo pipefail
cloud-init status --wait >/dev/null || true
install -d -m 0755 /etc/aitrainer
umask 022
printf '%s\n' "$WORKER_ENV" > /etc/aitrainer/worker.env
printf 'AZURE_CLIENT_ID=%s\n' "$CLIENT_ID" >> /etc/aitrainer/worker.env
printf '%s\n' "$SECRETS" > /etc/aitrainer/secrets.list
cat > /etc/aitrainer/config.env <<CONFIG
VAULT_URI=$VAULT_URI
CLIENT_ID=$CLIENT_ID
TENANT_ID=$TENANT_ID
REGISTRY=$REGISTRY
CONFIG
if [ -n "${IMAGE:-}" ]; then
  printf '%s\n' "$IMAGE" > /etc/aitrainer/image
fi
systemctl daemon-reload
/usr/local/bin/aitrainer-workers-restart
