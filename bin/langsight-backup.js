#!/usr/bin/env node
// The CLI is TypeScript run through tsx, so the same sources serve the CLI, the tests and Lambda.
import { register } from 'tsx/esm/api'

// The CLI prints its own progress on stderr; structured logs only with --verbose.
process.env.POWERTOOLS_LOG_LEVEL ??= process.argv.includes('--verbose') ? 'DEBUG' : 'SILENT'
// The AWS SDK's warning about Node 20 (README.md states the Node requirement once): not the
// operator's business at every command.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
register()
const { main } = await import('../cli/main.ts')
await main(process.argv)
// Done: a handle something left open (a socket, a timer) must not keep the process alive. Output
// still being flushed gets a few seconds; then the process ends with the command's exit code.
setTimeout(() => process.exit(), 5_000).unref()
