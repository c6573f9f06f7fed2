// Worker hosting 'vm' (the default): `count` NC-series VMs, always on, one worker container
// per GPU under systemd. cloud-init (static) installs the driver, Docker, the NVIDIA container
// toolkit and the unit; the "configure" run command (every deployment) writes the settings,
// the secret names and the image, and restarts the workers. Outbound only: no public IP on
// the VMs, no inbound rule; a NAT gateway gives them internet access.
param name string
param location string
param tags object
param vmSize string
param count int
param sshPublicKey string
param identityId string
param identityClientId string

@description('Worker image; empty until the postdeploy hook built one (workers wait for it)')
param image string
param registryServer string
param keyVaultUri string

@description('AITRAINER_* settings with plain values')
param settings object

@description('AITRAINER_* setting name → Key Vault secret name (fetched at each start)')
param secretSettings object

param adminUsername string = 'aitrainer'
param osDiskSizeGB int = 128

resource nsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: 'nsg-${name}'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource natIp 'Microsoft.Network/publicIPAddresses@2024-05-01' = {
  name: 'pip-nat-${name}'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
  }
}

resource nat 'Microsoft.Network/natGateways@2024-05-01' = {
  name: 'nat-${name}'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    publicIpAddresses: [
      {
        id: natIp.id
      }
    ]
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: 'vnet-${name}'
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        '10.40.0.0/24'
      ]
    }
    subnets: [
      {
        name: 'workers'
        properties: {
          addressPrefix: '10.40.0.0/26'
          networkSecurityGroup: {
            id: nsg.id
          }
          natGateway: {
            id: nat.id
          }
          defaultOutboundAccess: false
        }
      }
    ]
  }
}

resource nics 'Microsoft.Network/networkInterfaces@2024-05-01' = [for i in range(0, count): {
  name: 'nic-${name}-${i}'
  location: location
  tags: tags
  properties: {
    ipConfigurations: [
      {
        name: 'ipconfig'
        properties: {
          subnet: {
            id: vnet.properties.subnets[0].id
          }
          privateIPAllocationMethod: 'Dynamic'
        }
      }
    ]
  }
}]

resource vms 'Microsoft.Compute/virtualMachines@2024-07-01' = [for i in range(0, count): {
  name: '${name}-${i}'
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    hardwareProfile: {
      vmSize: vmSize
    }
    storageProfile: {
      imageReference: {
        publisher: 'Canonical'
        offer: 'ubuntu-24_04-lts'
        sku: 'server'
        version: 'latest'
      }
      osDisk: {
        createOption: 'FromImage'
        diskSizeGB: osDiskSizeGB
        managedDisk: {
          storageAccountType: 'Premium_LRS'
        }
        deleteOption: 'Delete'
      }
    }
    osProfile: {
      computerName: '${name}-${i}'
      adminUsername: adminUsername
      customData: loadFileAsBase64('worker-vm/cloud-init.yaml')
      linuxConfiguration: {
        disablePasswordAuthentication: true
        ssh: {
          publicKeys: [
            {
              path: '/home/${adminUsername}/.ssh/authorized_keys'
              keyData: sshPublicKey
            }
          ]
        }
      }
    }
    networkProfile: {
      networkInterfaces: [
        {
          id: nics[i].id
          properties: {
            deleteOption: 'Delete'
          }
        }
      ]
    }
  }
}]

resource configure 'Microsoft.Compute/virtualMachines/runCommands@2024-07-01' = [for i in range(0, count): {
  parent: vms[i]
  name: 'configure'
  location: location
  tags: tags
  properties: {
    source: {
      script: loadTextContent('worker-vm/configure.sh')
    }
    parameters: [
      {
        name: 'WORKER_ENV'
        value: join(map(items(settings), item => '${item.key}=${item.value}'), '\n')
      }
      {
        name: 'SECRETS'
        value: join(map(items(secretSettings), item => '${item.key}=${item.value}'), '\n')
      }
      {
        name: 'VAULT_URI'
        value: keyVaultUri
      }
      {
        name: 'CLIENT_ID'
        value: identityClientId
      }
      {
        name: 'TENANT_ID'
        value: tenant().tenantId
      }
      {
        name: 'REGISTRY'
        value: registryServer
      }
      {
        name: 'IMAGE'
        value: image
      }
    ]
    timeoutInSeconds: 5400
    treatFailureAsDeploymentFailure: true
  }
}]

output names array = [for i in range(0, count): vms[i].name]
