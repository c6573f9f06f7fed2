// One user-assigned identity per component, so role assignments exist before the apps do
// and survive their re-creation.
param location string
param tags object
param apiName string
param workerName string

resource api 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: apiName
  location: location
  tags: tags
}

resource worker 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: workerName
  location: location
  tags: tags
}

output apiId string = api.id
output apiPrincipalId string = api.properties.principalId
output apiClientId string = api.properties.clientId
output workerId string = worker.id
output workerPrincipalId string = worker.properties.principalId
output workerClientId string = worker.properties.clientId
