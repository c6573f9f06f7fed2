// Every role assignment of the system, at the narrowest scope that works: the account (the
// API's own host storage needs it), the models container, each Key Vault secret, the
// registry, the Application Insights component. Principals are the user-assigned identities
// of identity.bicep.
param storageAccountName string
@description('The container of exports and checkpoints: all the blob access the worker has')
param modelsContainerName string
@description('The tables the worker writes (trainings, workers): not the API\'s idempotency keys')
param workerTableNames array
param keyVaultName string
@description('The Key Vault secrets the API reads (its settings\' references), one grant each')
param apiSecretNames array
@description('The Key Vault secrets the worker reads: not the API tokens')
param workerSecretNames array
param registryName string
param appInsightsName string
param apiPrincipalId string
param workerPrincipalId string

// Built-in role definition ids (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}
var principals = {
  api: apiPrincipalId
  worker: workerPrincipalId
}

// api: the Functions host's own storage (AzureWebJobsStorage wants Blob Data Owner), the
// deployment package, the models container and the user delegation key behind download SAS
// (generateUserDelegationKey is part of both blob data roles); rows and queue messages.
// worker: queue leases and the poison queue (KEDA's azure-queue scaler reads the queue
// length with the same identity); rows and heartbeats in its two tables only (never the
// idempotency keys, whose records the API replays); blobs in the models container only
// (containerGrants), never the Functions package.
var storageGrants = [
  {
    principal: 'api'
    role: 'storageBlobDataOwner'
  }
  {
    principal: 'api'
    role: 'storageQueueDataContributor'
  }
  {
    principal: 'api'
    role: 'storageTableDataContributor'
  }
  {
    principal: 'worker'
    role: 'storageQueueDataContributor'
  }
]
var containerGrants = [
  {
    principal: 'worker'
    role: 'storageBlobDataContributor'
  }
]
var registryGrants = [
  {
    principal: 'worker'
    role: 'acrPull'
  }
]
var appInsightsGrants = [
  {
    principal: 'api'
    role: 'monitoringMetricsPublisher'
  }
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource modelsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  name: '${storageAccountName}/default/${modelsContainerName}'
}

resource workerTables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' existing = [for table in workerTableNames: {
  name: '${storageAccountName}/default/${table}'
}]

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource apiSecrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = [for secret in apiSecretNames: {
  parent: vault
  name: secret
}]

resource workerSecrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = [for secret in workerSecretNames: {
  parent: vault
  name: secret
}]

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource storageAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for grant in storageGrants: {
  name: guid(storage.id, principals[grant.principal], roles[grant.role])
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles[grant.role])
    principalId: principals[grant.principal]
    principalType: 'ServicePrincipal'
  }
}]

resource containerAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for grant in containerGrants: {
  name: guid(modelsContainer.id, principals[grant.principal], roles[grant.role])
  scope: modelsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles[grant.role])
    principalId: principals[grant.principal]
    principalType: 'ServicePrincipal'
  }
}]

resource workerTableAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (table, i) in workerTableNames: {
  name: guid(workerTables[i].id, workerPrincipalId, roles.storageTableDataContributor)
  scope: workerTables[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}]

// Key Vault RBAC at the scope of one secret: each identity reads exactly what its settings
// reference, and the worker (which runs tenants' data) can never read the API tokens.
resource apiSecretAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (secret, i) in apiSecretNames: {
  name: guid(apiSecrets[i].id, apiPrincipalId, roles.keyVaultSecretsUser)
  scope: apiSecrets[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: apiPrincipalId
    principalType: 'ServicePrincipal'
  }
}]

resource workerSecretAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (secret, i) in workerSecretNames: {
  name: guid(workerSecrets[i].id, workerPrincipalId, roles.keyVaultSecretsUser)
  scope: workerSecrets[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
  }
}]

resource registryAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for grant in registryGrants: {
  name: guid(registry.id, principals[grant.principal], roles[grant.role])
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles[grant.role])
    principalId: principals[grant.principal]
    principalType: 'ServicePrincipal'
  }
}]

resource appInsightsAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for grant in appInsightsGrants: {
  name: guid(appInsights.id, principals[grant.principal], roles[grant.role])
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles[grant.role])
    principalId: principals[grant.principal]
    principalType: 'ServicePrincipal'
  }
}]
