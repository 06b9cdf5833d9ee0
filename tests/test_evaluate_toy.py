"""``seq2seq evaluate`` on a toy run, as a user runs it: the data generated again (``--toy`` or
the task recorded in scores.json), and the exact-oracle measures (``exaccerr_*``,
``injection_*``) equal to what compare-tf's functions give for the same checkpoint and set."""

import json
import shutil
from types import SimpleNamespace

import pytest

from conftest import ROOT, seq2seq

import seq2seq as api
from seq2seq.compare.injection import POSITIONS, probe
from seq2seq.compare.oracle import measure
from seq2seq.compare.toy_evaluation import summary_keys
from seq2seq.data.batching import encode_pairs
from seq2seq.data.toy import dataset
from seq2seq.decoding.evaluate import read_split
from seq2seq.load import load_model


@pytest.fixture(scope="module")
def reverse_run(tmp_path_factory):
    """A tiny model trained 20 steps on the reverse task (no scores.json: nothing recorded)."""
    d = tmp_path_factory.mktemp("toy_eval")
    api.train(ROOT / "recipes" / "reverse.yaml", d / "run", progress=False,
              dataset=dataset("reverse", 1),
              overrides=["train.max_steps=20", "train.eval_every=20", "train.threads=1",
                         "train.warmup_steps=0", "model.hidden_size=16", "model.embedding_dim=8",
                         "train.valid_max_sentences=50"])
    return SimpleNamespace(dir=d, run=d / "run")


def test_exaccerr_keys_equal_the_comparisons_measure(reverse_run):
    p = seq2seq("evaluate", "--checkpoint", reverse_run.run, "--toy", "reverse", "--split",
                "validation", "--json", cwd=reverse_run.dir)
    s = json.loads(p.stdout)
    assert s["n"] == 500 and s["hallucination_method"] == "exact: toy task reverse"
    model, tok, cfg = load_model(reverse_run.run / "best.pt")
    data = encode_pairs(tok, read_split(cfg, "validation", dataset("reverse", 1)))
    curves = measure(model, {"validation": data}, cfg.decode.batch_size, "cpu",
                     task="reverse")["validation"]
    assert s["exaccerr_task"] == "reverse" and s["exaccerr_set"] == "validation"
    assert s["exaccerr_n"] == 500 == curves["n"][0]
    assert s["exaccerr_total"] == pytest.approx(curves["exaccerr_total"], rel=1e-9)
    assert s["exaccerr_total_pct"] == pytest.approx(curves["exaccerr_total_pct"], rel=1e-9)
    assert s["exaccerr_by_position"]["exaccerr"] == pytest.approx(curves["exaccerr"])
    # the pooled error rates: every greedy token counted once, before or after the first error
    wrong = sum(r * k for key in ("clean", "after")
                for r, k in zip(curves[f"err_{key}"], curves[f"n_{key}"]) if k)
    tokens = sum(curves["n_clean"]) + sum(curves["n_after"])
    assert tokens == sum(curves["n"])
    ours = (s["exaccerr_error_before_first"] * sum(curves["n_clean"])
            + s["exaccerr_error_after_first"] * sum(curves["n_after"])) / 100
    assert ours == pytest.approx(wrong)
    inj = probe(model, data, cfg.decode.batch_size, "cpu", ts=POSITIONS, task="reverse")
    keys = {k: v for k, v in s.items() if k.startswith("injection_")}
    assert keys and keys == pytest.approx(
        {k: v for k, v in summary_keys("reverse", "validation", curves, inj).items()
         if k.startswith("injection_")})
    key = next(iter(inj))  # HOW_K, or HOW_K_tT with several positions
    assert keys[f"injection_{key}_acc"] == pytest.approx(inj[key]["acc"])


def test_the_recorded_task_the_text_block_and_the_plot(reverse_run, tmp_path):
    """recipes/toy.py records the task in scores.json: no --toy needed; the printed block; the
    ExAccErr curve with --plot."""
    rec = tmp_path / "rec"
    rec.mkdir()
    shutil.copy(reverse_run.run / "best.pt", rec / "best.pt")
    (rec / "scores.json").write_text(json.dumps({"toy_task": "reverse", "data_seed": 1}))
    out = seq2seq("evaluate", "--checkpoint", rec, "--split", "validation", "--plot", "ex.png",
                  cwd=tmp_path).stdout
    assert "ExAccErr" in out and "toy task reverse, validation, 500 outputs" in out
    assert "error injection" in out and "k=1 gold" in out and "random" in out
    png = (tmp_path / "ex.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_toy_run_that_records_no_task_is_one_line(reverse_run):
    p = seq2seq("evaluate", "--checkpoint", reverse_run.run, cwd=reverse_run.dir, check=False)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "--toy TASK" in p.stderr, p.stderr

