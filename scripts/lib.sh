# Shared settings and helpers for scripts/*. Sourced, not run.
# shellcheck shell=bash

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_MAJOR=15
PG_BINDIR="/usr/lib/postgresql/$PG_MAJOR/bin"
PG_OS_USER="${PGTRICKLE_OS_USER:-pgtrickle}"
PG_PORT="${PGTRICKLE_PORT:-28815}"

log() { printf '\033[1m[pg_trickle]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[pg_trickle] error:\033[0m %s\n' "$*" >&2; exit 1; }

pg_config_path() { echo "$PG_BINDIR/pg_config"; }

# Runs a command as the cluster's OS user (PostgreSQL will not run as root).
as_pg_user() {
  if [ "$(id -un)" = "$PG_OS_USER" ]; then "$@"; else runuser -u "$PG_OS_USER" -- "$@"; fi
}

PG_PKGLIBDIR() { "$(pg_config_path)" --pkglibdir; }

# Builds and installs the extension into the system PostgreSQL. The old .so is unlinked first: copying
# over a library that a running server has mapped crashes that server, while an unlinked file stays
# valid for the processes that have it open.
install_extension() {
  local profile_flag=()
  [ "${PGTRICKLE_PROFILE:-debug}" = release ] && profile_flag=(--release)
  rm -f "$(PG_PKGLIBDIR)/pg_trickle.so"
  log "building and installing pg_trickle (${PGTRICKLE_PROFILE:-debug})"
  ( cd "$REPO_ROOT" && cargo pgrx install --pg-config "$(pg_config_path)" "${profile_flag[@]}" ) >&2
}

# Whether the PostgreSQL OS user can reach a path (a repo under a mode-0700 home, for one, it cannot).
pg_user_can_reach() { runuser -u "$PG_OS_USER" -- test -x "$1" 2>/dev/null; }
