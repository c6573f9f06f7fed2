// Holds the worker image, built in the cloud by `az acr build` (infra/hooks/worker-image.sh).
// No admin user and no anonymous pull: the worker identity pulls with AcrPull.
param name string
param location string
param tags object

@description('Refuse the public network (needs Premium, the SKU with private endpoints)')
param denyPublicNetworkAccess bool

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: denyPublicNetworkAccess ? 'Premium' : 'Basic'
  }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
    publicNetworkAccess: denyPublicNetworkAccess ? 'Disabled' : 'Enabled'
  }
}

output name string = registry.name
output loginServer string = registry.properties.loginServer
