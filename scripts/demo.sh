#!/usr/bin/env bash
# The demo: install what is missing, start throwaway PostgreSQL and S3 servers (ClickHouse is the
# embedded chdb engine), back up LangSight-like sample data, list and verify it, wreck the
# databases, restore, and show that every table matches.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec npx tsx scripts/demo.ts "$@"
