#!/bin/sh
# azd preprovision hook: make the secrets and the worker VMs' SSH key once per azd environment.
# Values live in the azd environment (.azure/<env>/.env, git-ignored, readable by you only)
# and reach Azure as secure parameters, which the template stores in Key Vault; the apps read
# them through Key Vault references. Re-running keeps existing values (rotation: docs/deploy.md).
set -eu

ensure() {  # ensure NAME COMMAND...: set NAME to the command's output unless it has a value
  name=$1
  shift
  if [ -z "$(azd env get-value "$name" 2>/dev/null || true)" ]; then
    azd env set "$name" "$("$@")" >/dev/null
    echo "preprovision: generated $name"
  fi
}

command -v openssl >/dev/null || { echo "preprovision: openssl is required" >&2; exit 1; }
ensure AITRAINER_API_TOKENS openssl rand -hex 32
ensure AITRAINER_SEALING_KEY openssl rand -base64 32
ensure AITRAINER_WEBHOOK_SECRET openssl rand -hex 32

hosting=$(azd env get-value AITRAINER_WORKER_HOSTING 2>/dev/null || true)
if [ "${hosting:-vm}" = "vm" ] && [ -z "$(azd env get-value AITRAINER_WORKER_SSH_PUBLIC_KEY 2>/dev/null || true)" ]; then
  key=".azure/${AZURE_ENV_NAME}/worker-ssh"
  if [ ! -f "$key" ]; then
    ssh-keygen -q -t ed25519 -N "" -C "aitrainer-worker-${AZURE_ENV_NAME}" -f "$key"
  fi
  azd env set AITRAINER_WORKER_SSH_PUBLIC_KEY "$(cat "$key.pub")" >/dev/null
  echo "preprovision: worker VMs accept the SSH key $key"
fi
