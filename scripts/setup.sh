#!/usr/bin/env bash
# Installs what langsight-backup needs on a Debian machine: PostgreSQL 15 (server for tests, pg_dump and
# pg_restore for the pipeline), Debian's clickhouse-server (tests), binutils and zip (the pg tools
# layer), and the npm dependencies. Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql postgresql-client)
command -v clickhouse-server >/dev/null || need+=(clickhouse-server clickhouse-client)
command -v objdump >/dev/null || need+=(binutils)
command -v zip >/dev/null || need+=(zip)
command -v mkfifo >/dev/null || need+=(coreutils)
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # Package scripts may try to start the services; the tests start their own, so a refusal is fine.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# `npm install`, not `npm ci`: chdb lists platform packages (darwin, linux-arm64) that the registry
# does not have, so they can never be in the lock file and `npm ci` refuses it. With a lock file
# present, `npm install` still installs exactly the locked versions.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund --loglevel=error
fi
# PostgreSQL 17 (the pg tools layer and a server for the tests), compiled from Debian's source:
# about 5 minutes on 2 idle cores the first time, then cached (under 1 s).
bash scripts/build-postgres.sh >/dev/null
