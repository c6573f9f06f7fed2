// The secrets (API tokens, sealing keys, webhook secret). RBAC authorization only: each app
// identity gets Key Vault Secrets User on the secrets it reads (rbac.bicep); nobody gets an
// access policy. Purge protection: a deleted vault or secret cannot be purged before its
// retention ends, so neither a mistake nor an attacker can destroy the sealing key at once.
param name string
param location string
param tags object

@description('Refuse the public network: the apps then need private endpoints (docs/deploy.md)')
param denyPublicNetworkAccess bool

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
    enablePurgeProtection: true
    publicNetworkAccess: denyPublicNetworkAccess ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: denyPublicNetworkAccess ? 'Deny' : 'Allow'
      bypass: 'None'
    }
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
