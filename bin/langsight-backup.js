#!/usr/bin/env node
// The CLI is TypeScript run through tsx, so the same sources serve the CLI, the tests and Lambda.
import { register } from 'tsx/esm/api'

// The CLI prints its own progress on stderr; structured logs only with --verbose.
process.env.POWERTOOLS_LOG_LEVEL ??= process.argv.includes('--verbose') ? 'DEBUG' : 'SILENT'
register()
const { main } = await import('#cli/main.ts')
await main(process.argv)
