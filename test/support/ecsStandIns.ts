/**
 * Stand-ins for the restore machine's ECS SDK integrations (the runner's `nativeHandlers`): the
 * ECS API cannot run here, so it is faked at that boundary and nowhere else.
 */

/** describeServices of services that have settled: drained (`running` 0), or at their desired count. */
export function settledServices(services: { service: string; desiredCount: number }[], running?: number) {
  return async (input: unknown) => {
    const name = (input as { Services: string[] }).Services[0]!
    const count = running ?? services.find((s) => s.service === name)!.desiredCount
    return { Services: [{ ServiceName: name, RunningCount: count, DesiredCount: count }] }
  }
}
