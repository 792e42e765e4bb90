#!/usr/bin/env bash
# Install a local argilla-server 2.8 with its dependencies: Debian redis-server and a
# separate venv (default <repo>/.venvs/argilla, override with ARGILLA_VENV) holding
# argilla-server and osmem-server. Idempotent: re-running it is fast when nothing changed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${ARGILLA_VENV:-$repo/.venvs/argilla}"
requirements="$here/requirements.txt"
stamp="$venv/.argilla-requirements.sha256"

say() { printf 'argilla-install: %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_redis() {
    if command -v redis-server >/dev/null 2>&1; then
        say "redis-server found at $(command -v redis-server)"
        return
    fi
    say "installing Debian package redis-server"
    export DEBIAN_FRONTEND=noninteractive
    if ! as_root apt-get install -y --no-install-recommends redis-server >/dev/null; then
        say "apt-get install failed; running apt-get update and retrying"
        as_root apt-get update >/dev/null
        as_root apt-get install -y --no-install-recommends redis-server >/dev/null
    fi
    command -v redis-server >/dev/null 2>&1 || { say "redis-server still not on PATH"; exit 1; }
}

# What a finished install records: the requirements' digest and that bytecode is compiled.
stamp_value() {
    printf '%s bytecode\n' "$(sha256sum "$requirements" | cut -d' ' -f1)"
}

venv_is_current() {
    [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(stamp_value)" ]
}

create_venv() {
    if [ -x "$venv/bin/python" ]; then
        return
    fi
    say "creating venv $venv"
    mkdir -p "$(dirname "$venv")"
    if command -v uv >/dev/null 2>&1; then
        uv venv --quiet "$venv"
    else
        python3 -m venv "$venv"
    fi
    [ -f "$venv/.gitignore" ] || printf '*\n' >"$venv/.gitignore"
}

install_packages() {
    say "installing $(grep -v '^#' "$requirements" | xargs)"
    if command -v uv >/dev/null 2>&1; then
        uv pip install --quiet --python "$venv/bin/python" -r "$requirements"
    else
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    fi
}

# Precompiled bytecode roughly halves the server's start-up (its import compiles ~5,500
# modules otherwise, and nothing is cached when PYTHONDONTWRITEBYTECODE is set).
compile_bytecode() {
    say "compiling bytecode"
    "$venv/bin/python" -m compileall -q -j0 "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >/dev/null
}

check_install() {
    "$venv/bin/python" -m argilla_server --help >/dev/null
    "$venv/bin/python" -c 'import osmem_server; osmem_server.resolve_binary()'
}

install_redis
if venv_is_current; then
    say "venv $venv is up to date"
    exit 0
fi
create_venv
install_packages
compile_bytecode
check_install
stamp_value >"$stamp"
say "done: $venv"
