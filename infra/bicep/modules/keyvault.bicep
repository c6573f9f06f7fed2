// The secrets (API tokens, sealing key, webhook secret). RBAC authorization only: the apps'
// identities get Key Vault Secrets User (rbac.bicep); nobody gets an access policy.
param name string
param location string
param tags object

@secure()
@description('Secret name → value; the values come from secure parameters of main.bicep')
param secrets object

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
  }
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = [for item in items(secrets): {
  parent: vault
  name: item.key
  properties: {
    value: item.value
    contentType: 'text/plain'
  }
}]

output name string = vault.name
output uri string = vault.properties.vaultUri
