/**
 * One state's handler in a process of its own, as Lambda runs it: only that function's module is
 * loaded, one invocation, then exit. The benchmark measures its peak memory, which is what a
 * Lambda's memory size must hold (the local CLI runs every Map item in one process instead).
 *
 *   node --import tsx bench/runStep.ts <function> '<input json>'
 *
 * Settings and secrets come from the environment, as for the CLI. Prints the handler's result.
 */
import { join } from 'node:path'
import type { Context } from 'aws-lambda'
import { lambdaContext } from '#cli/local/lambdaContext.ts'

const [name, inputJson] = process.argv.slice(2)
if (!name || !/^[a-zA-Z]+$/.test(name) || inputJson === undefined) {
  process.stderr.write("usage: runStep.ts <function> '<input json>'\n")
  process.exit(2)
}
const module = (await import(join(import.meta.dirname, '..', 'functions', `${name}.ts`))) as {
  handler: (event: unknown, context: Context) => Promise<unknown>
}
// Lambda's 15 minutes: the handler's abort signal fires 10 s before, as on AWS
const context = lambdaContext(name, 15 * 60 * 1000)
const output = await module.handler(JSON.parse(inputJson), context)
// keep-alive sockets of the SDK clients would hold the process open; a Lambda is frozen instead
process.stdout.write(`${JSON.stringify(output)}\n`, () => process.exit(0))
