#!/usr/bin/env bash
# `npm run package [-- --stage prod --param="pgMajor=16" …]`: the whole AWS deployment packaged
# offline into .serverless/ (CloudFormation template, one zip per function, the pg tools layer).
#
# Needs no AWS account: Serverless Framework v3 gets fake credentials and every network
# feature it has (dashboard, telemetry, update checks) is switched off. The pg tools layer is
# built first when its zip is missing or older than its build scripts (scripts/build-pg-layer.sh:
# PostgreSQL 17 compiled from Debian's source by scripts/build-postgres.sh, cached).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

stage=dev
pg_major=17
args=()
while (($# > 0)); do
  case $1 in
    --stage) stage=$2; shift 2 ;;
    --stage=*) stage=${1#--stage=}; shift ;;
    --param=pgMajor=*) pg_major=${1#--param=pgMajor=}; args+=("$1"); shift ;;
    --param) [[ ${2:-} == pgMajor=* ]] && pg_major=${2#pgMajor=}; args+=("$1" "${2:-}"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

layer_zip=layer/build/pgtools-$pg_major.zip
if [[ ! -f $layer_zip || $layer_zip -ot scripts/build-pg-layer.sh || $layer_zip -ot scripts/build-postgres.sh ]]; then
  echo "package: $layer_zip is missing or stale; building it" >&2
  bash scripts/build-pg-layer.sh "$pg_major" >/dev/null
fi

# Fake credentials: packaging signs nothing, but the framework refuses to start without any.
export AWS_ACCESS_KEY_ID=offline-packaging AWS_SECRET_ACCESS_KEY=offline-packaging AWS_REGION=${AWS_REGION:-us-east-1}
export SLS_TELEMETRY_DISABLED=1 SLS_TRACKING_DISABLED=1 SLS_NOTIFICATIONS_MODE=off
export LSB_OFFLINE_PACKAGE=1 SLS_INTERACTIVE_SETUP_DISABLE=1 SLS_DEPRECATION_DISABLE='*' CI=${CI:-1}
unset AWS_PROFILE AWS_SESSION_TOKEN

exec npx --no-install serverless package --stage "$stage" "${args[@]}"
