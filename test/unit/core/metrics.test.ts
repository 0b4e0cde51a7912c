import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { BackupStore } from '#catalog/backupStore.ts'
import { lambdaContext } from '#cli/local/lambdaContext.ts'
import { postgresDumpKey } from '#core/backupKeys.ts'
import { MANIFEST_FORMAT_VERSION } from '#core/manifest.ts'
import { flushMetrics, metricsEnabled, recordBackup, recordDrill, resetMetrics } from '#core/metrics.ts'
import { handler as commitManifest } from '#functions/commitManifest.ts'
import { uniquePrefix, useEnv } from '../../support/env.ts'

const PASSWORD = 'hunter2-Sup3rS3cret'

interface EmfLine {
  _aws: {
    CloudWatchMetrics: {
      Namespace: string
      Dimensions: string[][]
      Metrics: { Name: string; Unit: string }[]
    }[]
  }
  [field: string]: unknown
}

/** Every stdout line written while `act` runs, and the EMF documents among them. */
async function captureStdout(act: () => unknown): Promise<{ text: string; emf: EmfLine[] }> {
  const lines: string[] = []
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk))
    return true
  })
  try {
    await act()
  } finally {
    spy.mockRestore()
  }
  const text = lines.join('')
  const emf = text
    .split('\n')
    .filter((l) => l.includes('"_aws"'))
    .map((l) => JSON.parse(l) as EmfLine)
  return { text, emf }
}

/** One EMF line as { dimensions, metrics: {name: [unit, value]} }. */
function summarize(line: EmfLine) {
  const [directive] = line._aws.CloudWatchMetrics
  const dimensions = Object.fromEntries(directive!.Dimensions[0]!.map((d) => [d, line[d]]))
  const metrics = Object.fromEntries(directive!.Metrics.map((m) => [m.Name, [m.Unit, line[m.Name]]]))
  return { namespace: directive!.Namespace, dimensions, metrics }
}

beforeEach(() => {
  resetMetrics()
  useEnv({
    AWS_LAMBDA_FUNCTION_NAME: 'langsight-backup-prod-commitManifest',
    POWERTOOLS_METRICS_DISABLED: undefined,
    POWERTOOLS_METRICS_NAMESPACE: undefined,
    POWERTOOLS_SERVICE_NAME: undefined,
  })
})
afterEach(() => {
  resetMetrics()
  useEnv({ AWS_LAMBDA_FUNCTION_NAME: undefined })
})

describe('Function: recordBackup', () => {
  it('prints one EMF line per engine and one per table, with the contract names, units and values', async () => {
    // Prepare
    const committedAt = new Date('2026-11-26T02:10:00.000Z')
    // Act
    const { emf } = await captureStdout(() => {
      recordBackup({
        engine: 'clickhouse',
        bytes: 300,
        rows: 1200,
        objects: 3,
        startedAt: '2026-11-26T02:00:00.000Z',
        committedAt,
        previousBytes: 1200,
        tables: [
          { table: 'spans', rows: 1000 },
          { table: 'sessions', rows: 200 },
        ],
      })
      flushMetrics()
    })
    // Assess
    expect(emf.map(summarize)).toEqual([
      {
        namespace: 'LangSightBackup',
        dimensions: { service: 'langsight-backup', Engine: 'clickhouse' },
        metrics: {
          BackupSucceeded: ['Count', 1],
          BackupBytes: ['Bytes', 300],
          BackupRows: ['Count', 1200],
          BackupObjects: ['Count', 3],
          BackupDurationSeconds: ['Seconds', 600],
          LastBackupEpochSeconds: ['Seconds', committedAt.getTime() / 1000],
          BackupSizeRatio: ['None', 0.25],
        },
      },
      {
        namespace: 'LangSightBackup',
        dimensions: { service: 'langsight-backup', Engine: 'clickhouse', Table: 'spans' },
        metrics: { TableRows: ['Count', 1000] },
      },
      {
        namespace: 'LangSightBackup',
        dimensions: { service: 'langsight-backup', Engine: 'clickhouse', Table: 'sessions' },
        metrics: { TableRows: ['Count', 200] },
      },
    ])
  })

  it('takes namespace and service from POWERTOOLS_*, and leaves out rows and ratio it does not know', async () => {
    useEnv({ POWERTOOLS_METRICS_NAMESPACE: 'Acme/Backups', POWERTOOLS_SERVICE_NAME: 'lsb-staging' })
    const { emf } = await captureStdout(() => {
      recordBackup({
        engine: 'postgres',
        bytes: 10,
        rows: null,
        objects: 1,
        startedAt: '2026-11-26T02:00:00.000Z',
        committedAt: new Date('2026-11-26T02:00:30.000Z'),
      })
      flushMetrics()
    })
    expect(emf.map(summarize)).toEqual([
      {
        namespace: 'Acme/Backups',
        dimensions: { service: 'lsb-staging', Engine: 'postgres' },
        metrics: {
          BackupSucceeded: ['Count', 1],
          BackupBytes: ['Bytes', 10],
          BackupObjects: ['Count', 1],
          BackupDurationSeconds: ['Seconds', 30],
          LastBackupEpochSeconds: ['Seconds', Date.parse('2026-11-26T02:00:30.000Z') / 1000],
        },
      },
    ])
  })
})

describe('Function: recordDrill', () => {
  it('counts a successful drill and its mismatched tables; a failed one has no DrillSucceeded', async () => {
    const { emf } = await captureStdout(() => {
      recordDrill('postgres', { succeeded: true, mismatchedTables: 0, durationSeconds: 42 })
      flushMetrics()
      recordDrill('clickhouse', { succeeded: false, mismatchedTables: 2, durationSeconds: 7 })
      flushMetrics()
    })
    expect(emf.map(summarize).map((s) => [s.dimensions.Engine, s.metrics])).toEqual([
      [
        'postgres',
        {
          DrillSucceeded: ['Count', 1],
          DrillMismatchedTables: ['Count', 0],
          DrillDurationSeconds: ['Seconds', 42],
        },
      ],
      ['clickhouse', { DrillMismatchedTables: ['Count', 2], DrillDurationSeconds: ['Seconds', 7] }],
    ])
  })
})

describe('Function: metricsEnabled', () => {
  it('prints nothing outside Lambda (a --local run), and honours POWERTOOLS_METRICS_DISABLED both ways', async () => {
    expect(metricsEnabled({})).toBe(false)
    expect(metricsEnabled({ AWS_LAMBDA_FUNCTION_NAME: 'f' })).toBe(true)
    expect(metricsEnabled({ AWS_LAMBDA_FUNCTION_NAME: 'f', POWERTOOLS_METRICS_DISABLED: 'true' })).toBe(false)
    expect(metricsEnabled({ POWERTOOLS_METRICS_DISABLED: 'false' })).toBe(true)
    // Act: what a local run does
    useEnv({ AWS_LAMBDA_FUNCTION_NAME: undefined })
    const { text } = await captureStdout(() => {
      recordDrill('postgres', { succeeded: true, mismatchedTables: 0, durationSeconds: 1 })
      flushMetrics()
    })
    expect(text).toBe('')
  })
})

describe('Function: commitManifest (metrics)', () => {
  it('flushes once per invocation, with the size ratio against the previous backup, and no secret or URL', async () => {
    // Prepare: a previous complete backup of 400 bytes; secrets in the environment
    const prefix = uniquePrefix('metrics')
    useEnv({
      LSB_PREFIX: prefix,
      LSB_POSTGRES_URL: `postgres://backup:${PASSWORD}@db.internal:5432/app`,
      LSB_SLACK_WEBHOOK_URL: `https://hooks.slack.com/services/T000/B000/${'x'.repeat(24)}`,
      LSB_SIZE_DROP_RATIO: '0.5',
    })
    const source = { serverVersion: '17.0', database: 'app' }
    const object = (backupId: string, bytes: number) => ({
      key: postgresDumpKey(prefix, backupId),
      bytes,
      sha256: 'a'.repeat(64),
      rows: null,
      table: null,
      compression: 'none' as const,
    })
    await new BackupStore(process.env.LSB_BUCKET!, prefix).writeManifest({
      formatVersion: MANIFEST_FORMAT_VERSION,
      backupId: '20261125T020000.000Z',
      engine: 'postgres',
      prefix,
      startedAt: '2026-11-25T02:00:00.000Z',
      finishedAt: '2026-11-25T02:01:00.000Z',
      toolVersion: 'test',
      source,
      objects: [object('20261125T020000.000Z', 400)],
      tables: [],
    })
    const backupId = '20261126T020000.000Z'
    // Act
    const { text, emf } = await captureStdout(() =>
      commitManifest(
        {
          postgres: {
            engine: 'postgres',
            backupId,
            startedAt: '2026-11-26T02:00:00.000Z',
            source,
            objects: [object(backupId, 100)],
          },
          clickhouse: { skipped: true },
          executionId: 'arn:aws:states:eu-west-1:123456789012:execution:langsight-backup:run-1',
        },
        lambdaContext('commitManifest', 120_000),
      ),
    )
    // Assess
    expect(emf).toHaveLength(1)
    expect(summarize(emf[0]!).metrics).toMatchObject({
      BackupSucceeded: ['Count', 1],
      BackupBytes: ['Bytes', 100],
      BackupSizeRatio: ['None', 0.25],
    })
    expect(text).not.toContain(PASSWORD)
    expect(text).not.toContain('hooks.slack.com')
    expect(text).not.toMatch(/postgres:\/\/|https?:\/\//)
  })
})
