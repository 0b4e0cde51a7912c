import { describe, expect, it } from 'vitest'
import { loadSettings } from '#core/config.ts'
import { ConfigError } from '#core/errors.ts'

describe('Function: loadSettings', () => {
  const base = { LSB_BUCKET: 'langsight-backups' }

  it('fills the runbook defaults', () => {
    const s = loadSettings({ ...base })
    expect(s.LSB_PREFIX).toBe('langsight-backups')
    expect([s.LSB_RETENTION_POSTGRES_DAYS, s.LSB_RETENTION_CLICKHOUSE_DAYS, s.LSB_KEEP_LAST]).toEqual([
      30, 84, 3,
    ])
    expect(s.LSB_QUIESCE_SERVICES).toBeUndefined()
  })

  it('parses the JSON settings: a migration argv and the services to quiesce', () => {
    const s = loadSettings({
      ...base,
      LSB_MIGRATE_STRATEGY: 'command',
      LSB_MIGRATE_COMMAND: '["uv","run","alembic","upgrade","head"]',
      LSB_QUIESCE_SERVICES: '[{"cluster":"langsight","service":"api","desiredCount":2}]',
    })
    expect(s.LSB_MIGRATE_COMMAND).toEqual(['uv', 'run', 'alembic', 'upgrade', 'head'])
    expect(s.LSB_QUIESCE_SERVICES).toEqual([{ cluster: 'langsight', service: 'api', desiredCount: 2 }])
  })

  it.each([
    ['LSB_MIGRATE_COMMAND', 'alembic upgrade head', /LSB_MIGRATE_COMMAND: not JSON/],
    ['LSB_MIGRATE_COMMAND', '[]', /LSB_MIGRATE_COMMAND: must name a command/],
    ['LSB_QUIESCE_SERVICES', '{"cluster":"x"}', /LSB_QUIESCE_SERVICES/],
    ['LSB_QUIESCE_SERVICES', '[{"cluster":"x","service":"api","desiredCount":-1}]', /LSB_QUIESCE_SERVICES/],
    ['LSB_BUCKET', 'Not_A_Bucket', /LSB_BUCKET: must be an S3 bucket name/],
    ['LSB_PREFIX', 'a/../b', /LSB_PREFIX/],
    ['LSB_KEEP_LAST', '0', /LSB_KEEP_LAST/],
  ])('refuses %s=%s with an error naming the variable', (name, value, message) => {
    const load = () => loadSettings({ ...base, [name]: value })
    expect(load).toThrow(ConfigError)
    expect(load).toThrow(message)
  })

  it.each([
    ['LSB_MIGRATE_COMMAND', '["alembic","upgrade","head"]', 'command'],
    ['LSB_MIGRATE_FUNCTION', 'langsight-migrate', 'lambda'],
    ['LSB_MIGRATE_ECS_TASK_DEFINITION', 'langsight-api:42', 'ecs'],
    ['LSB_MIGRATE_ECS_SUBNETS', 'subnet-1,subnet-2', 'ecs'],
    ['LSB_MIGRATE_ECS_SECURITY_GROUPS', 'sg-1', 'ecs'],
  ])('refuses %s without its strategy, naming both variables', (name, value, strategy) => {
    // Act
    const unselected = () => loadSettings({ ...base, [name]: value })
    const otherStrategy = () => loadSettings({ ...base, [name]: value, LSB_MIGRATE_STRATEGY: 'none' })
    const selected = loadSettings({ ...base, [name]: value, LSB_MIGRATE_STRATEGY: strategy })
    // Assess
    expect(unselected).toThrow(ConfigError)
    expect(unselected).toThrow(
      `${name} is set but LSB_MIGRATE_STRATEGY is none, so it would do nothing (set LSB_MIGRATE_STRATEGY=${strategy}, or unset ${name})`,
    )
    expect(otherStrategy).toThrow(`LSB_MIGRATE_STRATEGY=${strategy}`)
    expect(selected.LSB_MIGRATE_STRATEGY).toBe(strategy)
  })

  it.each([
    ['LSB_CLICKHOUSE_S3_AUTH', 'server'],
    ['LSB_CLICKHOUSE_S3_BUCKET_URL', 'https://backups.example.com/bucket'],
  ])('refuses %s when the streaming path is forced, naming both variables', (name, value) => {
    // Act
    const forced = () => loadSettings({ ...base, [name]: value, LSB_CLICKHOUSE_TRANSFER: 'stream' })
    const auto = loadSettings({ ...base, [name]: value })
    // Assess
    expect(forced).toThrow(ConfigError)
    expect(forced).toThrow(`${name} is set but LSB_CLICKHOUSE_TRANSFER is stream, so it would do nothing`)
    expect(auto.LSB_CLICKHOUSE_TRANSFER).toBe('auto')
  })

  it('refuses an LSB_CLICKHOUSE_S3_AUTH that is neither function, server nor a named collection', () => {
    expect(() => loadSettings({ ...base, LSB_CLICKHOUSE_S3_AUTH: "collection:x'; DROP" })).toThrow(
      /LSB_CLICKHOUSE_S3_AUTH: must be function, server or collection:<name>/,
    )
  })
})
