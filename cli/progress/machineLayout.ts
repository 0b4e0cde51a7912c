/**
 * What the progress display needs to know of a state machine's definition: for each Map, where
 * its items are and which states run inside it; for each Task, where its result goes. Read from
 * the ASL itself, so a new Map shows its counts without a table to keep up to date.
 */

/** The parts of an ASL definition read here (a structural subset of `AslDefinition`). */
export interface AslShape {
  States: Record<
    string,
    {
      Type: string
      ItemsPath?: unknown
      ResultPath?: unknown
      ItemProcessor?: AslShape
      Iterator?: AslShape
      Branches?: AslShape[]
    }
  >
}

export interface MachineLayout {
  /** ItemsPath of each Map state. */
  itemsPath: Map<string, string>
  /** The innermost Map each state inside a Map iteration belongs to. */
  mapOf: Map<string, string>
  /** ResultPath of each Task (absent: `$`, the result is the output). */
  resultPath: Map<string, string | null>
}

export const emptyLayout = (): MachineLayout => ({
  itemsPath: new Map(),
  mapOf: new Map(),
  resultPath: new Map(),
})

/** Walks a definition, nested Maps and Parallel branches included. */
export function machineLayout(definition: AslShape | undefined): MachineLayout {
  const layout = emptyLayout()
  const walk = (states: AslShape['States'], map: string | undefined) => {
    for (const [name, state] of Object.entries(states)) {
      if (map) layout.mapOf.set(name, map)
      if (state.Type === 'Task') {
        const path = state.ResultPath
        layout.resultPath.set(name, typeof path === 'string' || path === null ? path : '$')
      }
      if (state.Type === 'Map') {
        layout.itemsPath.set(name, typeof state.ItemsPath === 'string' ? state.ItemsPath : '$')
        const processor = state.ItemProcessor ?? state.Iterator
        if (processor) walk(processor.States, name)
      }
      for (const branch of state.Branches ?? []) walk(branch.States, map)
    }
  }
  if (definition) walk(definition.States, undefined)
  return layout
}

/** The value at a reference path (`$`, `$.plan.batches`), or undefined. */
export function valueAt(value: unknown, path: string): unknown {
  if (path === '$') return value
  if (!path.startsWith('$.')) return undefined
  let at = value
  for (const field of path.slice(2).split('.')) {
    if (typeof at !== 'object' || at === null) return undefined
    at = (at as Record<string, unknown>)[field]
  }
  return at
}

/** The `bytes` a Task's result reports (ExportBatch: what its batch stored so far). */
export function bytesOf(result: unknown): number | undefined {
  const bytes = (result as { bytes?: unknown } | null | undefined)?.bytes
  return typeof bytes === 'number' ? bytes : undefined
}

/**
 * The bytes of the objects a Task's result lists (a backup's manifest entry, as SnapshotPostgres
 * returns it). A result's own `bytes` may be a plan's size (ListClickHouseTables): not counted.
 */
export function objectBytes(result: unknown): number | undefined {
  const objects = (result as { objects?: unknown } | null | undefined)?.objects
  if (!Array.isArray(objects) || objects.length === 0) return undefined
  const sizes = objects.map((o) => (o as { bytes?: unknown } | null)?.bytes)
  return sizes.every((b) => typeof b === 'number')
    ? (sizes as number[]).reduce((sum, b) => sum + b, 0)
    : undefined
}
