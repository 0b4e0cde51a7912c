import { describe, expect, it } from 'vitest'
import {
  type AslDefinition,
  type EventLog,
  LocalExecutionFailed,
  type LocalRunOptions,
  runStateMachine,
} from '#cli/local/runStateMachine.ts'

const RESOURCE = 'arn:aws:lambda:us-east-1:000000000000:function:work'

interface Outcome {
  output?: unknown
  failure?: LocalExecutionFailed
  events: EventLog[]
}

/** Runs a hand-written definition through the local runner, recording its events and how it ended. */
async function run(
  definition: AslDefinition,
  input: Record<string, unknown>,
  options: LocalRunOptions,
): Promise<Outcome> {
  const events: EventLog[] = []
  try {
    const { output } = await runStateMachine('backup', input, {
      ...options,
      definition,
      onEvent: (event) => events.push(event),
    })
    return { output, events }
  } catch (error) {
    if (!(error instanceof LocalExecutionFailed)) throw error
    return { failure: error, events }
  }
}

const entered = (events: EventLog[], state: string) =>
  events.some((e) => e.type === 'StateEntered' && e.state.name === state)

/** Pass "Prepare", then an inline Map "Work" running the Task "Step" once per item of `$.items`. */
const MAP_OF_TASKS: AslDefinition = {
  StartAt: 'Prepare',
  States: {
    Prepare: { Type: 'Pass', Next: 'Work' },
    Work: {
      Type: 'Map',
      ItemsPath: '$.items',
      ItemProcessor: {
        ProcessorConfig: { Mode: 'INLINE' },
        StartAt: 'Step',
        States: { Step: { Type: 'Task', Resource: RESOURCE, End: true } },
      },
      End: true,
    },
  },
}

describe('Function: runStateMachine (payload quota)', () => {
  it('fails a Pass state whose output is over the limit, naming it, and runs no Task after it', async () => {
    // Prepare: a 1,110-byte Pass result, then a Task that must never run
    const definition: AslDefinition = {
      StartAt: 'Pad',
      States: {
        Pad: { Type: 'Pass', Result: { pad: 'x'.repeat(1100) }, Next: 'After' },
        After: { Type: 'Task', Resource: RESOURCE, End: true },
      },
    }
    let afterCalls = 0
    // Act
    const { failure, events } = await run(
      definition,
      {},
      {
        payloadLimitBytes: 1000,
        nativeHandlers: {
          After: async () => {
            afterCalls++
            return null
          },
        },
      },
    )
    // Assess
    expect(failure?.error).toBe('States.DataLimitExceeded')
    expect(failure?.cause_).toBe(
      'state Pad: output is 1,110 bytes, over the 1,000-byte limit (payloadLimitBytes)',
    )
    expect(afterCalls).toBe(0)
    expect(events.at(-1)).toMatchObject({ type: 'ExecutionFailed', Error: 'States.DataLimitExceeded' })
  })

  it('fails a Task whose result is over the limit in UTF-8 bytes: no Retry, no Catch, not even one naming the error', async () => {
    // Prepare: 500 "é" are 502 characters of JSON but 1,002 bytes
    const definition: AslDefinition = {
      StartAt: 'Big',
      States: {
        Big: {
          Type: 'Task',
          Resource: RESOURCE,
          Retry: [{ ErrorEquals: ['States.ALL'], MaxAttempts: 2 }],
          Catch: [
            { ErrorEquals: ['States.DataLimitExceeded'], Next: 'Recovered' },
            { ErrorEquals: ['States.ALL'], Next: 'Recovered' },
          ],
          End: true,
        },
        Recovered: { Type: 'Pass', End: true },
      },
    }
    let calls = 0
    // Act
    const { failure, events } = await run(
      definition,
      {},
      {
        payloadLimitBytes: 1000,
        retryIntervalMs: 0,
        nativeHandlers: {
          Big: async () => {
            calls++
            return 'é'.repeat(500)
          },
        },
      },
    )
    // Assess
    expect(failure?.error).toBe('States.DataLimitExceeded')
    expect(failure?.cause_).toBe(
      'state Big: task result is 1,002 bytes, over the 1,000-byte limit (payloadLimitBytes)',
    )
    expect(calls).toBe(1)
    expect(entered(events, 'Recovered')).toBe(false)
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'StateFailed', Error: 'States.DataLimitExceeded' }),
    )
  })

  it('fails a Task whose result fits but whose output after ResultPath does not', async () => {
    // Prepare: a 600-character input plus a 500-character result at $.result
    const definition: AslDefinition = {
      StartAt: 'Merge',
      States: {
        Merge: { Type: 'Task', Resource: RESOURCE, ResultPath: '$.result', Next: 'Then' },
        Then: { Type: 'Task', Resource: RESOURCE, End: true },
      },
    }
    let thenCalls = 0
    // Act
    const { failure } = await run(
      definition,
      { pad: 'x'.repeat(600) },
      {
        payloadLimitBytes: 1000,
        nativeHandlers: {
          Merge: async () => 'y'.repeat(500),
          Then: async () => {
            thenCalls++
            return null
          },
        },
      },
    )
    // Assess
    expect(failure?.error).toBe('States.DataLimitExceeded')
    expect(failure?.cause_).toBe(
      'state Merge: output is 1,122 bytes, over the 1,000-byte limit (payloadLimitBytes)',
    )
    expect(thenCalls).toBe(0)
  })

  it('fails a Map whose iteration input (built by ItemSelector) is over the limit before any iteration runs', async () => {
    // Prepare: a 626-byte Map input whose ItemSelector doubles the pad
    const definition: AslDefinition = {
      StartAt: 'Work',
      States: {
        Work: {
          Type: 'Map',
          ItemsPath: '$.items',
          ItemSelector: { 'a.$': '$.pad', 'b.$': '$.pad' },
          ItemProcessor: {
            StartAt: 'Step',
            States: { Step: { Type: 'Task', Resource: RESOURCE, End: true } },
          },
          End: true,
        },
      },
    }
    let calls = 0
    // Act
    const { failure } = await run(
      definition,
      { items: [1, 2, 3], pad: 'x'.repeat(600) },
      {
        payloadLimitBytes: 1000,
        nativeHandlers: {
          Step: async () => {
            calls++
            return null
          },
        },
      },
    )
    // Assess
    expect(failure?.error).toBe('States.DataLimitExceeded')
    expect(failure?.cause_).toMatch(
      /^state Work: iteration \d input is 1,215 bytes, over the 1,000-byte limit \(payloadLimitBytes\)$/,
    )
    expect(calls).toBe(0)
  })

  it('fails a Map whose iterations fit but whose collected output does not', async () => {
    // Prepare: five 302-byte results
    // Act
    const { failure } = await run(
      MAP_OF_TASKS,
      { items: [1, 2, 3, 4, 5] },
      { payloadLimitBytes: 1000, nativeHandlers: { Step: async () => 'z'.repeat(300) } },
    )
    // Assess
    expect(failure?.error).toBe('States.DataLimitExceeded')
    expect(failure?.cause_).toBe(
      'state Work: output is 1,516 bytes, over the 1,000-byte limit (payloadLimitBytes)',
    )
  })

  it('fails a Parallel whose branches fit but whose output does not', async () => {
    // Prepare: two branches of 602 bytes each
    const branch = (name: string): AslDefinition => ({
      StartAt: name,
      States: { [name]: { Type: 'Pass', Result: 'p'.repeat(600), End: true } },
    })
    const definition: AslDefinition = {
      StartAt: 'Both',
      States: { Both: { Type: 'Parallel', Branches: [branch('Left'), branch('Right')], End: true } },
    }
    // Act
    const { failure } = await run(definition, {}, { payloadLimitBytes: 1000 })
    // Assess
    expect(failure?.error).toBe('States.DataLimitExceeded')
    expect(failure?.cause_).toBe(
      'state Both: output is 1,207 bytes, over the 1,000-byte limit (payloadLimitBytes)',
    )
  })

  it("names Step Functions' own limit when none is configured", async () => {
    // Prepare: a 300,010-byte Pass result
    const definition: AslDefinition = {
      StartAt: 'Huge',
      States: { Huge: { Type: 'Pass', Result: { pad: 'x'.repeat(300_000) }, End: true } },
    }
    // Act
    const { failure } = await run(definition, {}, {})
    // Assess
    expect(failure?.error).toBe('States.DataLimitExceeded')
    expect(failure?.cause_).toBe(
      "state Huge: output is 300,010 bytes, over Step Functions' 262,144-byte limit",
    )
  })
})

describe('Function: runStateMachine (history quota)', () => {
  it('fails an inline Map over too many items with States.Runtime, and stops running its Tasks', async () => {
    // Prepare: 200 items cost 8 + 7 × 200 = 1,408 events against a limit of 500
    let calls = 0
    const items = Array.from({ length: 200 }, (_, i) => i)
    // Act
    const { failure, events } = await run(
      MAP_OF_TASKS,
      { items },
      {
        historyEventLimit: 500,
        nativeHandlers: {
          Step: async (input) => {
            calls++
            return input
          },
        },
      },
    )
    // Assess
    expect(failure?.error).toBe('States.Runtime')
    expect(failure?.cause_).toMatch(
      /^The execution reached the maximum number of history events \(500\)\. Counted locally, reached in state (Step|Work \(iteration \d+\))\.$/,
    )
    expect(calls).toBeLessThan(80)
    expect(events.at(-1)).toMatchObject({ type: 'ExecutionFailed', Error: 'States.Runtime' })
  })
})

describe('Function: runStateMachine (just under both quotas)', () => {
  // 20 items: 8 + 7 × 20 = 148 history events; the Map's output, 20 × 22 + 21 = 461 bytes, is the largest payload
  const items = Array.from({ length: 20 }, (_, i) => i)
  const step = async () => 'é'.repeat(10)

  it('succeeds at exactly the history and payload limits', async () => {
    // Act
    const { output, failure } = await run(
      MAP_OF_TASKS,
      { items },
      { historyEventLimit: 148, payloadLimitBytes: 461, nativeHandlers: { Step: step } },
    )
    // Assess
    expect(failure).toBeUndefined()
    expect(output).toEqual(items.map(() => 'é'.repeat(10)))
  })

  it('fails one event under the history limit', async () => {
    // Act
    const { failure } = await run(
      MAP_OF_TASKS,
      { items },
      { historyEventLimit: 147, payloadLimitBytes: 461, nativeHandlers: { Step: step } },
    )
    // Assess
    expect(failure?.error).toBe('States.Runtime')
    expect(failure?.cause_).toMatch(/\(147\)/)
  })

  it('fails one byte under the payload limit', async () => {
    // Act
    const { failure } = await run(
      MAP_OF_TASKS,
      { items },
      { historyEventLimit: 148, payloadLimitBytes: 460, nativeHandlers: { Step: step } },
    )
    // Assess
    expect(failure?.error).toBe('States.DataLimitExceeded')
    expect(failure?.cause_).toBe(
      'state Work: output is 461 bytes, over the 460-byte limit (payloadLimitBytes)',
    )
  })
})
