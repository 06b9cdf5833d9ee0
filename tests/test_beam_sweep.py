"""``seq2seq evaluate --beam-sizes`` (the beam sweep) and the hallucination keys of
``evaluate --json``, on the tiny model of tests/test_cli.py, as a user runs them."""

import json
from types import SimpleNamespace

import pytest

from conftest import seq2seq
from test_cli import PAIRS, toy  # noqa: F401 (toy: the trained model, a module fixture)

from seq2seq.decoding.beam_sweep import format_sweep
from seq2seq.decoding.hallucination import evaluation_report

ROW_KEYS = {"beam", "length_penalty", "bleu", "chrf", "length_ratio", "empty_pct",
            "truncated_pct", "n", "hallucination_proxy_rate"}


def test_sweep_rows_json_and_plot(toy):  # noqa: F811
    p = seq2seq("evaluate", "--checkpoint", toy.run, "--split", "test", "--beam-sizes", "2", "1",
                "--length-penalty", "0", "1.0", "--json", "--plot", "sweep.png", cwd=toy.dir)
    rows = json.loads(p.stdout)["beam_sweep"]
    assert [(r["beam"], r["length_penalty"]) for r in rows] == [(1, 0), (1, 1.0), (2, 0),
                                                                (2, 1.0)]
    for r in rows:
        assert set(r) == ROW_KEYS
        assert r["n"] == len(PAIRS)
        assert 0 <= r["empty_pct"] <= 100 and 0 <= r["truncated_pct"] <= 100
        assert r["length_ratio"] > 0
    # greedy has no length penalty: one decoding, the same figures for each penalty
    assert {k: v for k, v in rows[0].items() if k != "length_penalty"} == \
        {k: v for k, v in rows[1].items() if k != "length_penalty"}
    png = (toy.dir / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # the greedy row is what a plain evaluate scores
    plain = json.loads(seq2seq("evaluate", "--checkpoint", toy.run, "--split", "test",
                               "--json", cwd=toy.dir).stdout)
    assert (rows[0]["bleu"], rows[0]["chrf"]) == (plain["bleu"], plain["chrf"])
    assert rows[0]["length_ratio"] == plain["length_ratio"]
    assert plain["hallucination_proxy_rate"] == rows[0]["hallucination_proxy_rate"]
    # real data: no exact oracle, so no exposure-bias keys (those are a toy run's)
    assert not [k for k in plain if k.startswith(("exaccerr", "injection"))]


def test_sweep_text_table_with_the_config_length_penalty(toy):  # noqa: F811
    out = seq2seq("evaluate", "--checkpoint", toy.run, "--split", "test", "--beam-sizes", "1",
                  "3", cwd=toy.dir).stdout.splitlines()
    assert "length ratio" in out[0] and "BLEU" in out[0] and "halluc" in out[0]
    assert len(out) == 3  # the header, one row per beam (one penalty: the config's)
    assert out[1].split()[:2] == ["1", "1"] and out[2].split()[:2] == ["3", "1"]


def test_single_length_penalty_and_hallucination_examples(toy):  # noqa: F811
    p = seq2seq("evaluate", "--checkpoint", toy.run, "--split", "test", "--beam", "2",
                "--length-penalty", "0.5", "--json", "--hallucination-examples", "h.txt",
                cwd=toy.dir)
    s = json.loads(p.stdout)
    assert "proxy" in s["hallucination_method"] and 0 <= s["hallucination_proxy_rate"] <= 100
    assert set(s["hallucination_examples"]) == {"proxy", "low_chrf_unsure"}
    text = (toy.dir / "h.txt").read_text(encoding="utf-8")
    assert "## proxy:" in text and "## low_chrf_unsure:" in text
    assert "hallucination proxy" in seq2seq("evaluate", "--checkpoint", toy.run, "--split",
                                            "test", cwd=toy.dir).stdout


@pytest.mark.parametrize("args, words", [
    (["--hyp", "r.txt", "--ref", "r.txt", "--beam-sizes", "1", "2"], "--beam-sizes"),
    (["--checkpoint", "run", "--length-penalty", "0", "1"], "--beam-sizes too"),
    (["--hyp", "r.txt", "--ref", "r.txt", "--toy", "reverse"], "--toy"),
    (["--checkpoint", "run", "--beam-sizes", "2", "--toy", "reverse"], "beam sweep"),
    (["--checkpoint", "run", "--beam-sizes", "2", "--beam", "3"], "replaces --beam"),
    (["--checkpoint", "run", "--beam-sizes", "2", "--output", "o.txt"], "--output"),
])
def test_misuse_is_one_line(tmp_path, args, words):
    (tmp_path / "r.txt").write_text("a\n", encoding="utf-8")
    p = seq2seq("evaluate", *args, cwd=tmp_path, check=False)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and words in p.stderr, p.stderr


@pytest.mark.parametrize("args, words", [
    (["--plot", "x.png"], "--beam-sizes too"),  # no sweep, and no toy run's ExAccErr curve
    (["--toy", "reverse"], "drop --toy"),  # the run reads data.path
])
def test_misuse_on_a_run_on_real_data_is_one_line(toy, args, words):  # noqa: F811
    p = seq2seq("evaluate", "--checkpoint", toy.run, "--split", "test", *args, cwd=toy.dir,
                check=False)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and words in p.stderr, p.stderr


def test_the_exact_measure_is_chosen_from_the_data():
    ev = SimpleNamespace(srcs=["a b c", "d e f"], refs=["c b a", "f e d"],
                         hyps=["c b a", "f e d d d"], per_token=[None, None])
    r = evaluation_report(ev)
    assert r["hallucination_method"] == "exact: toy task reverse"
    assert r["hallucination_rate"] == 50.0 and r["hallucination_looping"] == 50.0
    rows = [{"beam": 1, "length_penalty": 0.0, "bleu": 1.0, "chrf": 2.0, "length_ratio": 1.0,
             "empty_pct": 0.0, "truncated_pct": 0.0, "n": 2, "hallucination_rate": 50.0}]
    assert "hallucination %" in format_sweep(rows) and "50.0" in format_sweep(rows)
