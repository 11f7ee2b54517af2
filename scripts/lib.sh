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

# Builds the extension, then installs it into the system PostgreSQL. The library is copied under a
# temporary name and renamed into place: a rename never touches the file a running server has mapped
# (overwriting it in place crashes that server), and a failed build leaves the old install intact.
install_extension() {
  local profile_flag=(--debug)
  [ "${PGTRICKLE_PROFILE:-debug}" = release ] && profile_flag=()
  local stage="$REPO_ROOT/target/pgrx-stage"
  log "building pg_trickle (${PGTRICKLE_PROFILE:-debug})"
  rm -rf "$stage"
  ( cd "$REPO_ROOT" && cargo pgrx package --pg-config "$(pg_config_path)" "${profile_flag[@]}" --out-dir "$stage" ) >&2
  local libdir sharedir
  libdir="$(PG_PKGLIBDIR)"
  sharedir="$("$(pg_config_path)" --sharedir)/extension"
  install -m 755 "$stage$libdir/pg_trickle.so" "$libdir/.pg_trickle.so.new"
  mv -f "$libdir/.pg_trickle.so.new" "$libdir/pg_trickle.so"
  install -m 644 "$stage$sharedir"/pg_trickle* "$sharedir/"
  # Earlier versions' install scripts and the update scripts from them (pg_trickle--<old>.sql,
  # pg_trickle--<old>--<new>.sql): ALTER EXTENSION pg_trickle UPDATE and CREATE EXTENSION ... VERSION.
  install -m 644 "$REPO_ROOT"/sql/pg_trickle--*.sql "$sharedir/"
  log "installed into $libdir and $sharedir"
}

# Whether the PostgreSQL OS user can reach a path (a repo under a mode-0700 home, for one, it cannot).
pg_user_can_reach() { runuser -u "$PG_OS_USER" -- test -x "$1" 2>/dev/null; }
