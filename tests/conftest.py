"""Shared test setup: one torch thread per process, caches and plots in temporary folders."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
_CACHE = tempfile.mkdtemp(prefix="seq2seq-test-")
os.environ.setdefault("MPLCONFIGDIR", os.path.join(_CACHE, "mpl"))
os.environ.setdefault("HF_HOME", os.path.join(_CACHE, "hf"))
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture
def run_cli(tmp_path):
    """Run ``seq2seq ARGS...`` as a user would (a subprocess); returns CompletedProcess."""

    def run(*args, input=None, check=True, env=None, timeout=600):
        e = dict(os.environ, **(env or {}))
        p = subprocess.run([sys.executable, "-m", "seq2seq", *map(str, args)], input=input,
                           capture_output=True, cwd=tmp_path, env=e, timeout=timeout,
                           text=isinstance(input, str) or input is None)
        if check and p.returncode != 0:
            raise AssertionError(f"seq2seq {' '.join(map(str, args))} exited {p.returncode}:\n"
                                 f"{p.stderr}")
        return p

    return run
