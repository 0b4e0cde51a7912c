import { inject } from 'vitest'

// The S3 endpoint and bucket are the same for every test; databases and prefixes are per test.
const { s3 } = inject('servers')
process.env.AWS_ENDPOINT_URL_S3 = s3.endpoint
process.env.AWS_ACCESS_KEY_ID = 'S3RVER'
process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER'
process.env.AWS_REGION = 'us-east-1'
process.env.LSB_BUCKET = s3.bucket
process.env.POWERTOOLS_LOG_LEVEL ??= 'SILENT'
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'
