// Worker hosting 'containerAppsJob': an event-driven Container Apps job on a GPU workload
// profile. KEDA's azure-queue scaler (with the worker identity, no connection string) starts
// one execution per queued training, up to maxExecutions at once; each runs
// `python -m worker --once` and exits, so nothing runs (or costs) while the queue is empty.
param environmentName string
param jobName string
param location string
param tags object

@description('Consumption-GPU-* (serverless, per second) or a dedicated GPU profile such as NC24-A100')
param gpuProfileType string
param maxExecutions int
param cpu int
param memory string
param replicaTimeoutSeconds int
param identityId string
param identityClientId string

@description('Worker image; empty before the first build (a placeholder image runs meanwhile)')
param image string
param registryServer string
param keyVaultUri string
param logAnalyticsWorkspaceId string
param storageAccountName string
param jobsQueue string

@description('AITRAINER_* settings with plain values')
param settings object

@description('AITRAINER_* setting name → Key Vault secret name')
param secretSettings object

var placeholderImage = 'mcr.microsoft.com/k8se/quickstart-jobs:latest'
var dedicated = !startsWith(gpuProfileType, 'Consumption')
var gpuProfile = union(
  {
    name: 'gpu'
    workloadProfileType: gpuProfileType
  },
  dedicated ? { minimumCount: 0, maximumCount: maxExecutions } : {}
)
var plainEnv = [for item in items(union(settings, { AZURE_CLIENT_ID: identityClientId })): {
  name: item.key
  value: item.value
}]
var secretEnv = [for item in items(secretSettings): {
  name: item.key
  secretRef: toLower(replace(item.key, '_', '-'))
}]
var secrets = [for item in items(secretSettings): {
  name: toLower(replace(item.key, '_', '-'))
  keyVaultUrl: '${keyVaultUri}secrets/${item.value}'
  identity: identityId
}]

resource managedEnvironment 'Microsoft.App/managedEnvironments@2025-01-01' = {
  name: environmentName
  location: location
  tags: tags
  properties: {
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
      gpuProfile
    ]
    appLogsConfiguration: {
      destination: 'azure-monitor'
    }
  }
}

resource environmentLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'logs'
  scope: managedEnvironment
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

resource job 'Microsoft.App/jobs@2025-01-01' = {
  name: jobName
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    environmentId: managedEnvironment.id
    workloadProfileName: 'gpu'
    configuration: {
      triggerType: 'Event'
      replicaTimeout: replicaTimeoutSeconds
      // The queue retries (the row counts attempts): a failed execution is not re-run.
      replicaRetryLimit: 0
      eventTriggerConfig: {
        parallelism: 1
        replicaCompletionCount: 1
        scale: {
          minExecutions: 0
          // No executions until a worker image exists: the placeholder would start GPU
          // containers that take nothing off the queue, again at every poll.
          maxExecutions: empty(image) ? 0 : maxExecutions
          pollingInterval: 30
          rules: [
            {
              name: 'training-jobs'
              type: 'azure-queue'
              identity: identityId
              metadata: {
                accountName: storageAccountName
                queueName: jobsQueue
                queueLength: '1'
                // Count only visible messages: one being trained, or waiting out its retry
                // delay, is invisible and must not start another (idle) GPU execution.
                queueLengthStrategy: 'visibleonly'
                cloud: 'AzurePublicCloud'
              }
            }
          ]
        }
      }
      registries: [
        {
          server: registryServer
          identity: identityId
        }
      ]
      secrets: secrets
    }
    template: {
      containers: [
        {
          name: 'worker'
          image: empty(image) ? placeholderImage : image
          args: [
            '--once'
          ]
          env: concat(plainEnv, secretEnv)
          resources: {
            cpu: cpu
            memory: memory
          }
        }
      ]
    }
  }
}

output name string = job.name
