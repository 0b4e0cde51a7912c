#!/usr/bin/env node
// The CLI is TypeScript run through tsx, so the same sources serve the CLI, the tests and Lambda.
import { closeSync, openSync } from 'node:fs'
import { isatty } from 'node:tty'
import { register } from 'tsx/esm/api'

// chdb (ClickHouse inside this process, for --local runs) takes a standard input that is not a
// terminal as the body of every INSERT … FROM INFILE, on top of the file: `yes | langsight-backup
// restore --local` would load garbage. The CLI reads nothing from it, so it is /dev/null from here,
// set before anything else opens a file (the lowest free descriptor, 0, is the one reused).
if (!isatty(0)) {
  try {
    closeSync(0)
  } catch {
    // not open at all: nothing for chdb to read either
  }
  const fd = openSync('/dev/null', 'r')
  if (fd !== 0) closeSync(fd)
}

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
