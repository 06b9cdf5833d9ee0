"""Shared test setup: one torch thread per process, caches and plots in temporary folders; the
CLI run as a user runs it (:func:`seq2seq`, and the ``run_cli`` fixture)."""

import functools
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


def seq2seq(*args, cwd, input=None, check=True, env=None, timeout=600):
    """``seq2seq ARGS...`` in a subprocess in ``cwd``, as a user runs it (``env``: variables
    added to this process's); its CompletedProcess, text unless ``input`` is bytes. ``check``:
    an AssertionError with its stderr when it exits with another status than 0."""
    e = dict(os.environ, **(env or {}))
    p = subprocess.run([sys.executable, "-m", "seq2seq", *map(str, args)], input=input,
                       capture_output=True, cwd=cwd, env=e, timeout=timeout,
                       text=not isinstance(input, bytes))
    if check and p.returncode != 0:
        raise AssertionError(f"seq2seq {' '.join(map(str, args))} exited {p.returncode}:\n"
                             f"{p.stderr}")
    return p


@pytest.fixture
def run_cli(tmp_path):
    """:func:`seq2seq` in the test's temporary folder."""
    return functools.partial(seq2seq, cwd=tmp_path)


def fit(model, batch, steps: int, lr: float = 1e-2):
    """``model`` trained ``steps`` Adam steps on one batch, teacher-forced (returns it)."""
    from seq2seq.data.tokenizer import PAD

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        logits = model(batch.src, batch.src_len, batch.tgt_in)  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch.tgt_out,
                                                 ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def text_run_config(folder, pairs, overrides=()):
    """A config that trains on ``pairs`` (validated on the first 4), written as line-aligned
    text files into ``folder`` (the current folder: the paths are relative), with ``overrides``
    (``--set`` texts) on top."""
    from seq2seq import config

    write_text_split(folder, "train", pairs)
    write_text_split(folder, "valid", pairs[:4])
    return config.load(None, [
        "data.path=text", "data.test_split=null",
        "data.data_files={train: [train.src, train.tgt], validation: [valid.src, valid.tgt]}",
        *overrides])


def write_text_split(folder, name: str, pairs) -> list:
    """``name.src`` and ``name.tgt`` in ``folder``, one side of ``pairs`` each; their names."""
    src, tgt = zip(*pairs)
    for ext, lines in (("src", src), ("tgt", tgt)):
        (folder / f"{name}.{ext}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [f"{name}.src", f"{name}.tgt"]


#: a tiny reverse corpus for command-line runs: 12 training pairs, 4 validation pairs
TINY_PAIRS = [("a b c", "c b a"), ("d e", "e d"), ("f g h", "h g f"), ("b d", "d b")] * 3


def tiny_text_run(folder) -> list:
    """``seq2seq train`` options for a few-second run on :data:`TINY_PAIRS` written to
    ``folder`` as text files (no test split, an 8-unit model, batches of 4, validation every 3
    steps); add ``train.max_steps`` and the options under test."""
    files = {s: write_text_split(folder, s, TINY_PAIRS if s == "train" else TINY_PAIRS[:4])
             for s in ("train", "valid")}
    return ["--set", "data.path=text", "--set", "data.test_split=null",
            "--set", f"data.data_files={{train: {files['train']}, "
                     f"validation: {files['valid']}}}",
            "--set", "model.embedding_dim=8", "--set", "model.hidden_size=8",
            "--set", "train.batch_size=4", "--set", "train.eval_every=3"]


def half_trained(cell: str = "gru", impl: str = "fused", attention: str = "bahdanau",
                 input_feeding: bool = True, seed: int = 3, steps: int = 30, n: int = 32):
    """A small model trained ``steps`` steps to reverse sequences of 8 symbols (ids 4..11), and
    its training batch of ``n`` sentences: it says EOS, but is unsure enough for beams and
    samples to differ. Returns ``(model in eval mode, batch)``. Trained with the fused layers;
    ``impl="manual"`` gives the same weights in the manual layers."""
    from seq2seq.data.batching import collate
    from seq2seq.config import ModelConfig
    from seq2seq.model.seq2seq import Seq2Seq
    from seq2seq.data.tokenizer import PAD

    vocab = 4 + 8
    g = torch.Generator().manual_seed(seed)
    src = [torch.randint(4, vocab, (int(torch.randint(3, 9, (1,), generator=g)),),
                         generator=g).tolist() for _ in range(n)]
    batch = collate(src, [s[::-1] for s in src], range(len(src)))
    torch.manual_seed(seed)
    cfg = ModelConfig(cell=cell, attention=attention, embedding_dim=16, hidden_size=32,
                      dropout=0.0, input_feeding=input_feeding)
    model = fit(Seq2Seq.from_config(cfg, vocab, vocab, PAD), batch, steps)
    if impl != "fused":
        import dataclasses

        other = Seq2Seq.from_config(dataclasses.replace(cfg, impl=impl), vocab, vocab, PAD)
        other.load_state_dict(model.state_dict())
        model = other
    return model.eval(), batch



def with_decode(checkpoint, out, **decode):
    """A copy of ``checkpoint`` at ``out`` whose config's ``decode`` section also sets
    ``decode`` (as a checkpoint trained with those settings has them); returns ``out``."""
    from seq2seq.training import checkpoint as ckpt_file

    ckpt = ckpt_file.load(checkpoint)
    ckpt["config"]["decode"].update(decode)
    ckpt_file.save(ckpt, out)
    return out
