#!/usr/bin/env bash
# Install the Debian services the scale-out tests and deployments use: PostgreSQL (Dagster instance
# storage) and redis-server (Celery broker and result backend). Idempotent: when both are present it
# only checks and exits; apt-get update runs only when an install fails without it.
set -euo pipefail

say() { printf 'services-install: %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian keeps the server binaries in /usr/lib/postgresql/<major>/bin, off PATH.
have_postgres() {
    command -v initdb >/dev/null 2>&1 && return 0
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

have_redis() {
    command -v redis-server >/dev/null 2>&1
}

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    say "installing Debian packages: $*"
    if ! as_root apt-get install -y --no-install-recommends "$@" >/dev/null; then
        say "apt-get install failed; running apt-get update and retrying"
        as_root apt-get update >/dev/null
        as_root apt-get install -y --no-install-recommends "$@" >/dev/null
    fi
}

missing=()
have_postgres || missing+=(postgresql)
have_redis || missing+=(redis-server)
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
fi
have_postgres || { say "PostgreSQL binaries still missing (looked on PATH and in /usr/lib/postgresql/*/bin)"; exit 1; }
have_redis || { say "redis-server still not on PATH"; exit 1; }
say "postgresql: $(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n1 || command -v initdb)"
say "redis-server: $(command -v redis-server)"
