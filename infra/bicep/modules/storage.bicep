// The account both components share: tables, queues, the models container and the Function
// App's deployment container. Identity only: shared keys (and so connection strings and
// account-key SAS) are off; download URLs are user-delegation SAS.
param name string
param location string
param tags object

@description('trainingsTable, workersTable, idempotencyTable, jobsQueue, poisonQueue, modelsContainer, deploymentContainer')
param names object

@description('Resume checkpoints (models/.resume/) not modified for this many days are deleted')
param checkpointRetentionDays int

@description('Origins of the web page (/ui/): the only ones that may GET blobs from a browser')
param webOrigins array

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }

}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    // The page fetches the model, metrics.json and plots through their SAS URLs.
    cors: {
      corsRules: [
        {
          allowedOrigins: webOrigins
          allowedMethods: [
            'GET'
            'HEAD'
          ]
          allowedHeaders: [
            'range'
          ]
          exposedHeaders: [
            'content-length'
            'content-type'
            'etag'
          ]
          maxAgeInSeconds: 3600
        }
      ]
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for container in [names.modelsContainer, names.deploymentContainer]: {
  parent: blobService
  name: container
  properties: {
    publicAccess: 'None'
  }
}]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queue in [names.jobsQueue, names.poisonQueue]: {
  parent: queueService
  name: queue
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for table in [names.trainingsTable, names.workersTable, names.idempotencyTable]: {
  parent: tableService
  name: table
}]

// Resume checkpoints are only needed while a training runs. Lifecycle filters match a prefix
// from the container's root; they live under .resume/ (docs/deploy.md: "Checkpoint clean-up").
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-old-checkpoints'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                // Resume checkpoints (shared/storage/artifacts.py RESUME_ROOT): rewritten every
                // epoch while a training runs, useless once it ended.
                '${names.modelsContainer}/.resume/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: checkpointRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
