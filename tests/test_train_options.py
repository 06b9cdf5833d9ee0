"""Training options: bf16 autocast, keep_last + averaging a run folder, fp16 refused on CPU."""

import datasets
import pytest
import torch

from seq2seq.training import checkpoint
from seq2seq.config import load
from seq2seq.errors import UserError
from seq2seq.training.loop import train


def toy():
    pairs = [{"src": " ".join("abcdef"[i % 6:] + "ab"), "tgt": "x y"} for i in range(40)]
    ds = datasets.Dataset.from_list(pairs)
    return datasets.DatasetDict({"train": ds, "validation": ds.select(range(8))})


def cfg(*overrides):
    return load(None, ["model.embedding_dim=8", "model.hidden_size=8", "train.batch_size=8",
                       "train.max_steps=6", "train.eval_every=2", "data.test_split=null",
                       *overrides])


def test_bf16_autocast_trains_on_cpu(tmp_path):
    summary = train(cfg("train.amp=bf16"), tmp_path / "run", dataset=toy(), progress=False)
    assert summary["steps"] == 6
    assert torch.isfinite(torch.tensor(summary["best"]["valid_loss"]))


def test_fp16_needs_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UserError, match="fp16"):
        train(cfg("train.amp=fp16", "train.device=cpu"), tmp_path / "run", dataset=toy(),
              progress=False)


def test_keep_last_then_average_the_run(tmp_path, run_cli):
    train(cfg("train.keep_last=2"), tmp_path / "run", dataset=toy(), progress=False)
    kept = sorted(p.name for p in (tmp_path / "run").glob("step-*.pt"))
    assert kept == ["step-4.pt", "step-6.pt"]
    run_cli("average", "--checkpoints", tmp_path / "run", "--out", tmp_path / "avg.pt")
    avg = checkpoint.load(tmp_path / "avg.pt")
    assert [p.rsplit("/", 1)[-1] for p in avg["averaged_from"]] == ["step-4.pt", "step-6.pt"]


@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_is_bf16_only_where_the_hardware_has_it(monkeypatch, tmp_path, capsys, native):
    """train.amp: auto (the Multi30k recipe's): bf16 autocast on a CPU with AVX-512 BF16 or
    AMX, float32 elsewhere (where torch would emulate bf16, slower than float32)."""
    import seq2seq.kernels.device as device

    monkeypatch.setattr(device, "native_bf16", lambda dev: native)
    used = []
    real = torch.autocast
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: used.append(
        (k.get("dtype"), k.get("enabled", True))) or real(*a, **k))
    train(cfg("train.amp=auto"), tmp_path / "run", dataset=toy(), progress=False)
    assert ((torch.bfloat16, True) in used) == native
    assert ("bf16 autocast (train.amp: auto)" in capsys.readouterr().err) == native


def test_native_bf16_reads_the_cpu_flags(monkeypatch, tmp_path):
    import builtins

    import seq2seq.kernels.device as device

    real_open = builtins.open
    for flags, expected in (("fpu avx512f avx512_bf16 amx_tile", True), ("fpu avx512f avx2", False)):
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(builtins, "open", lambda p, *a, **k: real_open(
            info if p == "/proc/cpuinfo" else p, *a, **k))
        assert device.native_bf16(torch.device("cpu")) is expected
    assert device.resolve_amp("none", torch.device("cpu")) == "none"
    assert device.resolve_amp("bf16", torch.device("cpu")) == "bf16"
