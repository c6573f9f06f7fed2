#!/bin/sh
# azd predeploy hook (workers first: they read what the new API queues): build the worker
# image in Azure Container Registry (no local Docker), then point the worker at it: the Container Apps job's image, or each VM's /etc/aitrainer/image
# and a restart of its workers. Skips the build when the registry already has this tag.
set -eu

registry=$(azd env get-value AZURE_CONTAINER_REGISTRY_NAME)
server=$(azd env get-value AZURE_CONTAINER_REGISTRY_ENDPOINT)
group=$(azd env get-value AZURE_RESOURCE_GROUP)
hosting=$(azd env get-value AITRAINER_WORKER_HOSTING)

# The tag is a digest of what goes into the image, so unchanged code is not rebuilt.
# (The same files the build context holds: .dockerignore keeps requirements/, shared/, worker/.)
tag=$(find requirements/api.txt requirements/worker.txt .dockerignore shared worker -type f \
  ! -path '*/__pycache__/*' ! -name '*.pyc' | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16)
image="${server}/aitrainer-worker:${tag}"

if az acr repository show --name "$registry" --image "aitrainer-worker:${tag}" >/dev/null 2>&1; then
  echo "worker-image: ${image} already built"
else
  echo "worker-image: building ${image} in ${registry} (about 20 minutes the first time)"
  az acr build --registry "$registry" --image "aitrainer-worker:${tag}" \
    --file worker/Dockerfile --timeout 7200 .
fi
azd env set AITRAINER_WORKER_IMAGE "$image" >/dev/null

if [ "$hosting" = "containerAppsJob" ]; then
  job=$(azd env get-value AITRAINER_WORKER_JOB_NAME)
  # Provisioned without an image, the job allows no executions (worker-job.bicep): lift that.
  executions=$(azd env get-value AITRAINER_WORKER_JOB_MAX_EXECUTIONS)
  az containerapp job update --name "$job" --resource-group "$group" --image "$image" \
    --max-executions "$executions" >/dev/null
  echo "worker-image: job ${job} runs ${image}"
else
  for vm in $(azd env get-value AITRAINER_WORKER_VM_NAMES); do
    az vm run-command invoke --resource-group "$group" --name "$vm" --command-id RunShellScript \
      --scripts "echo '${image}' > /etc/aitrainer/image && /usr/local/bin/aitrainer-workers-restart" >/dev/null
    echo "worker-image: ${vm} runs ${image}"
  done
fi
