/**
 * A local Serverless Framework v3 plugin (listed in serverless.yml) for two gaps of v3:
 *
 * 1. Its configuration schema predates the nodejs22.x runtime and rejects CloudFormation
 *    conditions in `provider.vpc` (which CloudFormation accepts): both are added to the schema,
 *    so validation stays on for everything else.
 * 2. `serverless package` asks CloudFormation for the deployed stack when the service has a
 *    layer (to skip re-uploading an unchanged one). With LSB_OFFLINE_PACKAGE=1 (set by
 *    scripts/package.sh) that question gets the answer a first deploy gets — the stack does not
 *    exist — and any other AWS call fails at once instead of waiting on the network.
 */
'use strict'

class ServerlessV3Compat {
  constructor(serverless) {
    const definitions = serverless.configSchemaHandler.schema.definitions ?? {}
    const runtimes = definitions.awsLambdaRuntime?.enum
    if (runtimes && !runtimes.includes('nodejs22.x')) runtimes.push('nodejs22.x')
    // { "Fn::If": [condition, <list>, []] }: an empty list is how Lambda is told "no VPC".
    const conditionalList = {
      type: 'object',
      properties: { 'Fn::If': { type: 'array', minItems: 3, maxItems: 3 } },
      required: ['Fn::If'],
      additionalProperties: false,
    }
    const vpc = definitions.awsLambdaVpcConfig?.properties
    for (const key of ['subnetIds', 'securityGroupIds']) vpc?.[key]?.anyOf?.push(conditionalList)

    if (process.env.LSB_OFFLINE_PACKAGE === '1') {
      const provider = serverless.getProvider('aws')
      provider.request = async (service, method, params) => {
        if (service === 'CloudFormation' && method === 'describeStacks') {
          throw new Error(`Stack with id ${params?.StackName} does not exist`)
        }
        throw new Error(`offline packaging (LSB_OFFLINE_PACKAGE=1) refuses the AWS call ${service}.${method}`)
      }
    }
  }
}

module.exports = ServerlessV3Compat
