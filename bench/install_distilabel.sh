#!/usr/bin/env bash
# Create .venvs/distilabel: distilabel 1.5.3 with the OpenAI client, for bench/distilabel_pipeline.py.
# beautifulsoup4 only silences distilabel's dataset-card step ("No module named 'bs4'").
set -euo pipefail
cd "$(dirname "$0")/.."
uv venv --clear --python 3.11 .venvs/distilabel
uv pip install --python .venvs/distilabel/bin/python 'distilabel[openai]==1.5.3' requests beautifulsoup4
.venvs/distilabel/bin/python -c "import distilabel, openai; print('distilabel', distilabel.__version__, 'openai', openai.__version__)"
