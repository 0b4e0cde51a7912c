import { ClickHouseError } from '#core/errors.ts'

interface Node {
  name: string
  kind: string
  dependsOn: string[]
}

/**
 * Tables first, in their given order, then views and materialized views, each after everything
 * it depends on (dependencies outside `nodes` are ignored); ties keep the given order.
 * A cycle is a ClickHouseError naming the views in it.
 */
export function orderByDependencies<T extends Node>(nodes: T[]): T[] {
  const ordered = nodes.filter((n) => n.kind === 'table')
  const placed = new Set(ordered.map((n) => n.name))
  const known = new Set(nodes.map((n) => n.name))
  let pending = nodes.filter((n) => n.kind !== 'table')
  while (pending.length > 0) {
    const ready = pending.filter((n) =>
      n.dependsOn.every((d) => placed.has(d) || !known.has(d) || d === n.name),
    )
    if (ready.length === 0) {
      throw new ClickHouseError(
        `views depend on each other in a cycle: ${pending.map((n) => n.name).join(', ')}`,
      )
    }
    for (const n of ready) {
      ordered.push(n)
      placed.add(n.name)
    }
    pending = pending.filter((n) => !placed.has(n.name))
  }
  return ordered
}
