/**
 * The runbook's `clickhouse-client --query "…"` against the embedded engine: chdb opens the data
 * directory in this process (as clickhouse-client would connect to a server), runs each query in
 * turn and closes. Plain JavaScript, no tsx, so that the process starts as lightly as node can.
 * The queries move their own bytes: `SELECT … INTO OUTFILE '<file>'` (clickhouse-client's
 * `> file`) and `INSERT … FROM INFILE '<file>'` (its `< file`). Run it with stdin /dev/null: chdb
 * reads a file or pipe on stdin as more rows for an INSERT, even one `FROM INFILE`.
 *
 *   node bench/chdbClient.mjs <chdb directory> '<query>' ['<query>' …]
 */
import { Session } from 'chdb'

const [dir, ...queries] = process.argv.slice(2)
if (!dir || queries.length === 0) {
  process.stderr.write("usage: chdbClient.mjs <chdb directory> '<query>' …\n")
  process.exit(2)
}
const session = new Session(dir)
try {
  for (const query of queries) await session.queryAsync(query)
} finally {
  session.close()
}
