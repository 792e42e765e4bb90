#!/usr/bin/env bash
# Set-up and everyday commands. Each one installs what it needs first (idempotent, fast when done).
#   ./dev.sh run [BATCH]   install, run preference_job (every asset) for one batch, print the pairs' path
#   ./dev.sh test [ARGS]   install (with the test servers), run the whole test suite
#   ./dev.sh ui [PORT]     open the Dagster UI (webserver + daemon) on http://127.0.0.1:PORT (default 3000)
#   ./dev.sh argilla [PORT] install and start a local Argilla on http://127.0.0.1:PORT (default 6900)
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
VENV=$ROOT/.venv
PY=$VENV/bin/python
# A portable llama.cpp build (AVX2, no AMX/AVX-512 kernels): the native build crashes on some CPUs.
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF}"
export DAGSTER_HOME="${DAGSTER_HOME:-$ROOT}"

install() {
  command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
  [ -x "$PY" ] || uv venv --quiet --python 3.11 "$VENV"
  if "$PY" -c 'import llama_cpp' >/dev/null 2>&1; then
    uv pip install --quiet --python "$PY" -e ".[local,dev]"
  else
    echo "Installing: Dagster, polars, httpx and the embedded model. llama.cpp is compiled from source once:"
    echo "about 5 to 13 minutes on 2 cores (later runs skip this). A line every minute says it is still going."
    with_ticker "compiling llama.cpp" uv pip install --quiet --python "$PY" -e ".[local,dev]"
    echo "Installed."
  fi
  compile_bytecode
}

# Run "$@" while printing "<what>: still going, N min" every minute; return its exit code.
with_ticker() {
  local what=$1 start=$SECONDS ticker
  shift
  ( while sleep 60; do echo "  $what: still going, $(((SECONDS - start) / 60)) min"; done ) &
  ticker=$!
  local code=0
  "$@" || code=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  return "$code"
}

compile_bytecode() {
  # Every dagster subprocess (CLI, daemon, code server, worker) starts seconds faster with compiled bytecode.
  local want stamp="$VENV/.bytecode"
  want=$(uv pip freeze --python "$PY" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$PY" -m compileall -q -j0 "$("$PY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >/dev/null || true
    echo "$want" >"$stamp"
  fi
}

install_test_extras() {
  uv pip install --quiet --python "$PY" -e ".[local,dev,scale]"
  # TRL's data utilities check that our pairs are what DPO/ORPO trainers read (no torch needed).
  uv pip install --quiet --python "$PY" --no-deps "trl==1.16.*" "transformers>=4.56,<6"
  uv pip install --quiet --python "$PY" tokenizers safetensors regex
  compile_bytecode
  tools/argilla/install.sh
  tools/services/install.sh
}

case "${1:-}" in
  run)
    install
    echo "Running preference_job for ${2:-batch-00000}; the embedded model answers one request at a time, so this"
    echo "takes minutes (more on a busy machine; answers are cached for the next run). Each step's progress:"
    exec "$VENV/bin/pref-assets" run --partition "${2:-batch-00000}"
    ;;
  test)
    shift
    install
    install_test_extras
    "$VENV/bin/ruff" check pref_assets tests bench tools
    "$PY" -m pytest "$@"
    ;;
  argilla)
    tools/argilla/install.sh
    echo "Starting Argilla on http://127.0.0.1:${2:-6900} (user argilla, key argilla.apikey): 30 s to 2.5 min."
    exec "$ROOT/.venvs/argilla/bin/python" tools/argilla/serve.py --port "${2:-6900}"
    ;;
  ui)
    install
    exec "$VENV/bin/dagster" dev -w workspace.yaml --port "${2:-3000}"
    ;;
  *)
    awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"
    exit 2
    ;;
esac
