// The HTTP API: a Python 3.11 Function App on the Flex Consumption plan, deployed by azd from
// dist/functions (python -m infra.package_functions), with a user-assigned identity for
// storage, Key Vault references and Application Insights.
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param storageAccountName string

@description('Blob container URL Flex Consumption deploys the package from')
param deploymentContainerUrl string
param appInsightsConnectionString string
param keyVaultName string

@description('AITRAINER_* settings with plain values')
param appSettings object

@description('AITRAINER_* setting name → Key Vault secret name')
param secretSettings object

param maximumInstanceCount int = 40
param instanceMemoryMB int = 2048

// The Functions host reaches its own storage with the identity (no AzureWebJobsStorage
// connection string: the account refuses shared keys). FUNCTIONS_WORKER_RUNTIME and
// FUNCTIONS_EXTENSION_VERSION are not app settings on Flex Consumption: functionAppConfig says it.
var hostSettings = {
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AZURE_CLIENT_ID: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}
var secretReferences = toObject(items(secretSettings), item => item.key, item => '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${item.value})')

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: app
  name: 'appsettings'
  properties: union(hostSettings, appSettings, secretReferences)
}

// azd deploys with Entra ID tokens; basic (publishing profile) credentials stay off.
resource ftp 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scm 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = app.name
output url string = 'https://${app.properties.defaultHostName}'
