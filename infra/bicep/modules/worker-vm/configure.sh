#!/bin/bash
# The "configure" run command of every worker VM (worker-vm.bicep), run on each deployment
# with the template's current values as environment variables: WORKER_ENV (KEY=VALUE lines),
# SECRETS (SETTING=key-vault-secret-name lines), VAULT_URI, CLIENT_ID, TENANT_ID, REGISTRY,
# IMAGE (empty until the predeploy hook built one). Then (re)starts one worker per GPU.
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
# Least privilege for the worker container, as a drop-in over cloud-init's unit (a VM's
# customData never changes, so this run command is where the unit evolves): no capabilities,
# no privilege gain, a read-only root. It writes only its work dir (temp files in /work/tmp,
# emptied at every start: exports can be large) and a small /tmp; Docker's bridge network
# keeps the metadata endpoint its managed identity needs reachable.
install -d -m 0755 /etc/systemd/system/aitrainer-worker@.service.d
cat > /etc/systemd/system/aitrainer-worker@.service.d/least-privilege.conf <<'UNIT'
[Service]
ExecStartPre=/bin/sh -c 'install -d -o 10001 -g 10001 -m 0700 /mnt/aitrainer/%i/tmp && find /mnt/aitrainer/%i/tmp -mindepth 1 -delete'
ExecStart=
ExecStart=/bin/sh -c 'exec /usr/bin/docker run --rm --name aitrainer-worker-%i --gpus device=%i --cap-drop ALL --security-opt no-new-privileges --read-only --tmpfs /tmp:rw,nosuid,nodev,size=512m --env TMPDIR=/work/tmp --env-file /etc/aitrainer/worker.env --env-file /run/aitrainer/secrets.env --env AITRAINER_WORKER_ID=%H-gpu%i --env AITRAINER_WORK_DIR=/work --volume /mnt/aitrainer/%i:/work "$(cat /run/aitrainer/image-%i)"'
# Exit 2: told AITRAINER_DEVICE=cuda and found no GPU; restarting cannot fix the driver.
RestartPreventExitStatus=2
UNIT
systemctl daemon-reload
/usr/local/bin/aitrainer-workers-restart
