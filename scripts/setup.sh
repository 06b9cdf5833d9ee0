#!/usr/bin/env bash
# Set up a project-local virtual environment (.venv) with everything seq2seq and its tests need.
# Idempotent: a second run only checks. Installs the CPU build of torch 2.13.0 first, so that
# pip does not fetch a multi-GB CUDA build to satisfy torch>=2.1 (see DEVELOPERS.md).
# A different torch: TORCH_SPEC="torch==2.5.1" bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)" >&2
  $PY -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup: installing $TORCH_SPEC (CPU build)" >&2
  .venv/bin/pip install -q --disable-pip-version-check "$TORCH_SPEC" 2>&1 | { grep -v "^WARNING: Location" >&2 || true; }
  .venv/bin/python -c "import torch" || { echo "setup: installing $TORCH_SPEC failed (see above)" >&2; exit 1; }
fi
if ! .venv/bin/python -c "import seq2seq, sentencepiece, datasets, sacrebleu, pytest, hypothesis, matplotlib" 2>/dev/null \
   || [ setup.cfg -nt .venv/.seq2seq-installed ]; then
  echo "setup: installing seq2seq and its requirements into .venv" >&2
  .venv/bin/pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | { grep -v "^WARNING: Location" >&2 || true; }
  .venv/bin/python -c "import seq2seq, sentencepiece, datasets, sacrebleu, pytest, hypothesis" \
    || { echo "setup: the install failed (see above)" >&2; exit 1; }
  touch .venv/.seq2seq-installed
fi
