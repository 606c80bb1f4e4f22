#!/usr/bin/env bash
# Prefect's server on PostgreSQL, for large fleets (README, "Prefect's server on PostgreSQL").
#
#   scripts/prefect-server-postgres.sh            create the database if missing, then run the server
#   scripts/prefect-server-postgres.sh --dry-run  print what it would do (password masked), do nothing
#   scripts/prefect-server-postgres.sh --help
#
# From the environment (defaults in brackets):
#   PGHOST [127.0.0.1] PGPORT [5432] PGUSER [postgres] PGPASSWORD [none]
#                                       the PostgreSQL server (libpq's variables); the role must be
#                                       allowed to create the database, or it must exist already
#   PREFECT_PG_DATABASE [prefect]       the database of Prefect's server (its tables: on first start)
#   PREFECT_SERVER_API_HOST [127.0.0.1] where the server listens (0.0.0.0: for other machines too)
#   PREFECT_SERVER_API_PORT [4200]
#   PREFECT_BIN [this repo's .venv/bin/prefect if present, else prefect on PATH]
# The database pool and the task-run recorder get settings for thousands of task runs unless already
# set (the PREFECT_SERVER_DATABASE_* / _SERVICES_* variables below). Runs in the foreground: Ctrl-C or
# SIGTERM (systemd) stops it.
set -euo pipefail

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }

dry_run=0
case "${1:-}" in
  "") ;;
  -h | --help) usage; exit 0 ;;
  -n | --dry-run) dry_run=1 ;;
  *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
esac

export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
db="${PREFECT_PG_DATABASE:-prefect}"
host="${PREFECT_SERVER_API_HOST:-127.0.0.1}"
port="${PREFECT_SERVER_API_PORT:-4200}"

if [[ ! "$db" =~ ^[A-Za-z_][A-Za-z0-9_]{0,62}$ ]]; then
  echo "PREFECT_PG_DATABASE must be a plain database name (letters, digits, _): got '$db'" >&2
  exit 2
fi
if [[ ! "$port" =~ ^[0-9]+$ ]]; then
  echo "PREFECT_SERVER_API_PORT must be a number: got '$port'" >&2
  exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefect="${PREFECT_BIN:-}"
if [[ -z "$prefect" ]]; then
  if [[ -x "$repo/.venv/bin/prefect" ]]; then prefect="$repo/.venv/bin/prefect"; else prefect=prefect; fi
fi

# The password goes into the URL percent-encoded; only the masked URL is ever printed.
secret=""
shown=""
if [[ -n "${PGPASSWORD:-}" ]]; then
  secret=":$(printf '%s' "$PGPASSWORD" | od -An -tx1 -v | tr -d ' \n' | sed 's/../%&/g')"
  shown=":***"
fi
db_host="$PGHOST"
[[ "$db_host" == *:* ]] && db_host="[$db_host]"  # an IPv6 address
url="postgresql+asyncpg://${PGUSER}${secret}@${db_host}:${PGPORT}/${db}"
masked_url="postgresql+asyncpg://${PGUSER}${shown}@${db_host}:${PGPORT}/${db}"

client_host="$host"
[[ "$client_host" == "0.0.0.0" || "$client_host" == "::" ]] && client_host="127.0.0.1"
api_url="http://${client_host}:${port}/api"

# Thousands of task runs (bench/prefect_server.py has the measurements): a larger pool and longer
# timeouts, and the task-run recorder writing in batches (its default, one transaction per event, falls
# behind, and a subscriber's events beyond 10,000 queued are dropped).
tuning=(
  PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE=20
  PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW=20
  PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_TIMEOUT=60
  PREFECT_SERVER_DATABASE_TIMEOUT=60
  PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT=15
  PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE=500
  PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL=1
  PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE=200
  PREFECT_SERVER_ANALYTICS_ENABLED=false
)
settings=()
for pair in "${tuning[@]}"; do
  name="${pair%%=*}"
  settings+=("$name=${!name:-${pair#*=}}")  # a value already in the environment wins
done

if ((dry_run)); then
  echo "would create database '$db' on $PGUSER@$PGHOST:$PGPORT if missing, then run, with:"
  echo "  PREFECT_SERVER_DATABASE_CONNECTION_URL=$masked_url"
  echo "  PREFECT_SERVER_API_HOST=$host"
  echo "  PREFECT_SERVER_API_PORT=$port"
  printf '  %s\n' "${settings[@]}"
  echo "  $prefect server start"
  echo "then, for the flows: prefect config set PREFECT_API_URL=$api_url"
  exit 0
fi

command -v psql >/dev/null || { echo "psql not found (Debian: apt-get install postgresql-client)" >&2; exit 1; }
exists="$(psql -X -w -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$db'")"
if [[ "$exists" != 1 ]]; then
  echo "creating database '$db' on $PGUSER@$PGHOST:$PGPORT"
  psql -X -w -q -d postgres -c "CREATE DATABASE \"$db\""
fi

cat <<EOF
Prefect's server on PostgreSQL: $masked_url
  API and UI at http://${client_host}:${port} (a new database gets its tables first: about 15-20 s)
Point the flows, workers and \`vbs-backup serve\` at it with:
  prefect config set PREFECT_API_URL=$api_url
EOF

unset PREFECT_API_DATABASE_CONNECTION_URL  # an alias of the setting below; one source of truth
export PREFECT_SERVER_DATABASE_CONNECTION_URL="$url"
export PREFECT_SERVER_API_HOST="$host" PREFECT_SERVER_API_PORT="$port"
export "${settings[@]}"
exec "$prefect" server start
