import { randomUUID } from 'node:crypto'
import type { Context } from 'aws-lambda'

/**
 * A Lambda context for calling a handler outside Lambda. `remainingMs` drives middy's early-timeout
 * abort signal: Lambda's 15 minutes to measure a step as on AWS, a day for a local run with no limit.
 */
export function lambdaContext(functionName: string, remainingMs = 24 * 3600 * 1000): Context {
  const started = Date.now()
  return {
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:local:000000000000:function:${functionName}`,
    memoryLimitInMB: '1024',
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 'local',
    callbackWaitsForEmptyEventLoop: false,
    getRemainingTimeInMillis: () => remainingMs - (Date.now() - started),
    done: () => {},
    fail: () => {},
    succeed: () => {},
  }
}
