import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import type { PgCompressionMethod, PgCompressionSetting } from '#core/config.ts'
import { ConfigError } from '#core/errors.ts'
import { libraryPathFor, type PgToolVersion } from './pgTool.ts'

/** A compression pg_dump is asked for: a method and its level (none has no level). */
export interface PgCompression {
  method: PgCompressionMethod
  level: number | null
}

/** pg_dump 16 brought `--compress=<method>:<level>` with zstd and lz4; older ones take a gzip level only. */
export const COMPRESSION_METHODS_SINCE = 16

/**
 * What `auto` picks with pg_dump ≥ 16: on a 703 MiB LangSight-like database zstd:1 stored 36 % fewer
 * bytes than gzip:1 (40.8 vs 64.0 MiB) and dumped at least as fast (5.0 vs 5.8 s; gzip:6 7.1 s);
 * zstd:3 was no smaller (bench/RESULTS.md, issue 10).
 */
const AUTO_NEW: PgCompression = { method: 'zstd', level: 1 }
/** What `auto` picks with an older pg_dump, or one built without zstd: LSB_PG_COMPRESS's default. */
const AUTO_OLD: PgCompression = { method: 'gzip', level: 1 }

/** `zstd:1`, `gzip:6`, `none`: how LSB_PG_COMPRESSION spells it. */
export function describeCompression(compression: PgCompression): string {
  return compression.level === null ? compression.method : `${compression.method}:${compression.level}`
}

/** pg_dump's option for a compression: `--compress=zstd:1` from 16 on, the bare gzip level before. */
export function compressArgument(compression: PgCompression, tool: PgToolVersion): string {
  if (tool.major >= COMPRESSION_METHODS_SINCE) return `--compress=${describeCompression(compression)}`
  return `--compress=${compression.method === 'none' ? 0 : compression.level}`
}

/**
 * The compression to dump with. `auto` is zstd:1 with a pg_dump ≥ 16 that supports it, else gzip:1.
 * Asking for zstd or lz4 from a pg_dump that cannot do it is a ConfigError naming LSB_PG_COMPRESSION
 * and the pg_dump, before anything runs: a setting never silently does something else.
 */
export async function resolvePgCompression(
  setting: PgCompressionSetting,
  tool: PgToolVersion,
): Promise<PgCompression> {
  if (setting === 'auto') {
    const usable = tool.major >= COMPRESSION_METHODS_SINCE && (await pgDumpSupports(tool, AUTO_NEW.method))
    return usable ? AUTO_NEW : AUTO_OLD
  }
  if (setting.method !== 'zstd' && setting.method !== 'lz4') return setting
  const asked = `LSB_PG_COMPRESSION=${describeCompression(setting)}`
  if (tool.major < COMPRESSION_METHODS_SINCE) {
    throw new ConfigError(
      `${asked} needs pg_dump ${COMPRESSION_METHODS_SINCE} or newer, but pg_dump ${tool.version} (${tool.path}) ` +
        `only compresses with gzip (set LSB_PG_COMPRESSION=auto or gzip:<1-9>, or point LSB_PG_BIN_DIR at ` +
        `PostgreSQL ${COMPRESSION_METHODS_SINCE}+ client tools such as the pg tools layer)`,
    )
  }
  if (!(await pgDumpSupports(tool, setting.method))) {
    throw new ConfigError(
      `${asked}: pg_dump ${tool.version} (${tool.path}) was built without ${setting.method} ` +
        '(set LSB_PG_COMPRESSION=auto or gzip:<1-9>, or use the pg tools layer, built with zstd and lz4)',
    )
  }
  return setting
}

/** pg_dump's words for a method its build lacks (common/compression.c), checked before it connects. */
const UNSUPPORTED = /does not support compression/

/**
 * Whether this pg_dump can write `method`: it checks that before connecting, so a dump to /dev/null
 * from a socket directory that does not exist answers in milliseconds without touching a server.
 */
async function pgDumpSupports(tool: PgToolVersion, method: PgCompressionMethod): Promise<boolean> {
  const args = [
    '--format=custom',
    `--compress=${method}`,
    '--file=/dev/null',
    '--no-password',
    '--dbname=host=/nonexistent/langsight-backup-probe',
  ]
  try {
    await promisify(execFile)(tool.path, args, {
      timeout: 10_000,
      env: { PATH: process.env.PATH, LD_LIBRARY_PATH: libraryPathFor(tool.path), LC_ALL: 'C' },
    })
    return true
  } catch (error) {
    return !UNSUPPORTED.test(String((error as { stderr?: string }).stderr))
  }
}
