#!/usr/bin/env bash
# Set up a project-local virtual environment (.venv) with everything seq2seq and its tests need.
# Idempotent: a second run only checks. Installs the CPU build of torch 2.13.0 first, so that
# pip does not fetch a multi-GB CUDA build to satisfy torch>=2.1 (see DEVELOPERS.md).
# A different torch: TORCH_SPEC="torch==2.5.1" bash scripts/setup.sh
# --browser: also Debian's chromium (apt-get, as root) and playwright, for the test that drives
# seq2seq serve's page in a headless browser (skipped without them, unless SEQ2SEQ_REQUIRE_BROWSER=1,
# as in .ci/run). Asked for, they must install: a failure exits 1 with one line saying why.
set -euo pipefail
cd "$(dirname "$0")/.."
BROWSER=0
for arg in "$@"; do
  case "$arg" in
    --browser) BROWSER=1 ;;
    *) echo "setup: unknown option $arg (known: --browser)" >&2; exit 2 ;;
  esac
done
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
if ! .venv/bin/python -c "import seq2seq, sentencepiece, datasets, sacrebleu, pytest, hypothesis, matplotlib, onnx, onnxruntime, starlette, uvicorn" 2>/dev/null \
   || [ setup.cfg -nt .venv/.seq2seq-installed ]; then
  echo "setup: installing seq2seq and its requirements into .venv" >&2
  .venv/bin/pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | { grep -v "^WARNING: Location" >&2 || true; }
  .venv/bin/python -c "import seq2seq, sentencepiece, datasets, sacrebleu, pytest, hypothesis, onnx, onnxruntime, starlette, uvicorn" \
    || { echo "setup: the install failed (see above)" >&2; exit 1; }
  touch .venv/.seq2seq-installed
fi
if [ "$BROWSER" = 1 ]; then  # asked for: a failure is an error, not a skipped test
  if ! command -v chromium >/dev/null; then
    echo "setup: installing Debian's chromium (apt-get, about 130 MB)" >&2
    log=$(mktemp)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >"$log" 2>&1 \
       || ! command -v chromium >/dev/null; then
      echo "setup: could not install Debian's chromium for the browser test (apt-get needs root and Debian's package lists): $(grep -m1 '^E:' "$log" || tail -n1 "$log")" >&2
      rm -f "$log"; exit 1
    fi
    rm -f "$log"
  fi
  if ! .venv/bin/python -c "import playwright.sync_api" 2>/dev/null; then
    echo "setup: installing playwright (it drives the system's chromium; no browser download)" >&2
    log=$(mktemp)
    .venv/bin/pip install -q --disable-pip-version-check -e ".[test,browser]" >"$log" 2>&1 || true
    if ! .venv/bin/python -c "import playwright.sync_api" 2>/dev/null; then
      echo "setup: could not install playwright for the browser test (pip install -e \".[browser]\"): $(grep -m1 '^ERROR' "$log" || tail -n1 "$log")" >&2
      rm -f "$log"; exit 1
    fi
    rm -f "$log"
  fi
fi
