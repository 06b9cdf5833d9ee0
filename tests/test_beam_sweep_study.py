"""The beam sweep beside out-of-domain sets: ``seq2seq evaluate --extra-test`` (plain and with
``--beam-sizes``), and ``scripts/beam_sweep.py`` over a fake compare-tf folder built from the
checkpoints of one tiny run (resumed from its cache; the table's means are the CSV's)."""

import csv
import importlib.util
import json
import os
import shutil
import statistics
from pathlib import Path

import pytest

from conftest import ROOT, TINY_PAIRS, seq2seq, tiny_text_run

AGAIN = "again=valid.src,valid.tgt"  # an extra set that is the validation split itself


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny run on TINY_PAIRS, keeping its step-3 and step-12 checkpoints (two models that
    decode differently)."""
    d = tmp_path_factory.mktemp("sweep")
    seq2seq("train", "--out", "run", *tiny_text_run(d), "--set", "train.max_steps=12",
            "--set", "train.keep_last=4", cwd=d)
    return d


def test_an_extra_set_equal_to_the_split_scores_as_the_split(tiny):
    p = seq2seq("evaluate", "--checkpoint", "run", "--split", "validation", "--beam-sizes",
                "1", "2", "--length-penalty", "0", "1.0", "--extra-test", AGAIN,
                "--extra-test", "tr=train.src,train.tgt",
                "--json", "--plot", "sweep.png", cwd=tiny)
    s = json.loads(p.stdout)
    assert set(s) == {"beam_sweep", "extra"} and list(s["extra"]) == ["again", "tr"]
    assert s["extra"]["again"]["beam_sweep"] == s["beam_sweep"]  # same lines, same rows
    assert len(s["beam_sweep"]) == 4 and s["beam_sweep"][0]["n"] == 4
    assert s["extra"]["tr"]["beam_sweep"][0]["n"] == len(TINY_PAIRS)
    png = (tiny / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    plain = json.loads(seq2seq("evaluate", "--checkpoint", "run", "--split", "validation",
                               "--extra-test", AGAIN, "--json", cwd=tiny).stdout)
    again = plain["extra"]["again"]
    for key in ("bleu", "chrf", "length_ratio", "n", "hallucination_method"):
        assert again[key] == plain[key], key
    assert (again["bleu"], again["chrf"]) == (s["beam_sweep"][0]["bleu"],
                                              s["beam_sweep"][0]["chrf"])
    text = seq2seq("evaluate", "--checkpoint", "run", "--split", "validation", "--beam-sizes",
                   "1", "--extra-test", AGAIN, cwd=tiny).stdout
    assert text.startswith("validation:\n") and "\n\nagain:\n" in text


@pytest.mark.parametrize("args, words", [
    (["--extra-test", "x=missing.src,valid.tgt"], "does not exist"),
    (["--extra-test", "x=valid.src"], "NAME=SRC_FILE,REF_FILE"),
    (["--extra-test", "x=valid.src,train.tgt"], "line-aligned"),
    (["--extra-test", AGAIN, "--extra-test", AGAIN], "given twice"),
    (["--beam-sizes", "1", "--extra-test", "validation=valid.src,valid.tgt"], "name of the split"),
])
def test_a_bad_extra_set_is_one_line(tiny, args, words):
    p = seq2seq("evaluate", "--checkpoint", "run", "--split", "validation", *args, cwd=tiny,
                check=False)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and words in p.stderr, p.stderr


def load_script():
    spec = importlib.util.spec_from_file_location("beam_sweep_script",
                                                  ROOT / "scripts" / "beam_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_study(tiny: Path) -> Path:
    """compare-tf's layout: two settings and the pretrained models, seeds 1 and 2 finished
    (result.json) with one of two checkpoints each, and mrt's seed 3 still training."""
    a, b = tiny / "run" / "step-3.pt", tiny / "run" / "step-12.pt"
    out = tiny / "study"
    for folder, ckpt, done in (("runs/constant-1.0/seed1", a, True),
                               ("runs/constant-1.0/seed2", b, True),
                               ("runs/mrt/seed1", b, True), ("runs/mrt/seed2", a, True),
                               ("runs/mrt/seed3", a, False), ("pretrained/seed1", a, True),
                               ("pretrained/seed2", b, True)):
        f = out / folder
        f.mkdir(parents=True)
        shutil.copy(ckpt, f / "last.pt")
        if done:
            (f / "result.json").write_text(json.dumps({"checkpoint": "last"}))
    return out


def md_means(md: str):
    """(set, setting, beam, penalty) -> the md table's cells."""
    cells, name, head = {}, None, None
    for line in md.splitlines():
        if line.startswith("### "):
            name = line[4:].split(" (")[0]
        elif line.startswith("| setting"):
            head = [c.strip() for c in line.strip("|").split("|")]
        elif line.startswith("| ") and head:
            row = dict(zip(head, (c.strip() for c in line.strip("|").split("|"))))
            cells[name, row["setting"], int(row["beam"]), float(row["length penalty"])] = row
    return cells


def test_script_sweeps_a_study_resumes_and_averages_over_seeds(tiny, monkeypatch, capsys):
    out = fake_study(tiny)
    script = load_script()
    monkeypatch.chdir(tiny)  # the runs' configs name their data files relative to it
    argv = [str(out), "--settings", "constant:1.0", "mrt", "pretrained", "--beam-sizes", "1",
            "2", "--length-penalty", "0", "1.0", "--split", "validation", "--extra-test",
            AGAIN, "--limit", "3", "--no-progress"]
    assert script.main(argv) == 0
    folder = out / "beam-sweep"
    with open(folder / "beam_sweep.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 2 * 2 * 2 * 2  # settings x seeds x sets x beams x penalties
    assert {r["set"] for r in rows} == {"validation", "again"}
    assert {r["n"] for r in rows} == {"3"}  # --limit
    assert list(rows[0])[:11] == ["setting", "seed", "set", "beam", "length_penalty", "bleu",
                                  "chrf", "length_ratio", "empty_pct", "truncated_pct",
                                  "hallucination_rate"]
    for r in rows:  # the extra set is the split: the same rows
        twin = next(t for t in rows if t["set"] != r["set"] and
                    (t["setting"], t["seed"], t["beam"], t["length_penalty"]) ==
                    (r["setting"], r["seed"], r["beam"], r["length_penalty"]))
        assert [r[k] for k in list(r)[5:]] == [twin[k] for k in list(twin)[5:]]
    md = (folder / "beam_sweep.md").read_text(encoding="utf-8")
    assert "first 3 sentences" in md and "runs/mrt/seed3" in md  # limited; not finished
    cells = md_means(md)
    assert len(cells) == 3 * 2 * 2 * 2
    seeds_differ = False
    for (name, setting, beam, a), cell in cells.items():
        mine = [r for r in rows if (r["set"], r["setting"], int(r["beam"]),
                                    float(r["length_penalty"])) == (name, setting, beam, a)]
        assert len(mine) == 2 and cell["seeds"] == "2"
        for key, heading, digits in (("bleu", "BLEU", 2), ("chrf", "chrF", 2),
                                     ("length_ratio", "length ratio", 3)):
            xs = [float(r[key]) for r in mine]
            assert abs(float(cell[heading]) - statistics.fmean(xs)) <= 0.6 * 10 ** -digits
            seeds_differ |= xs[0] != xs[1]
        lo, hi = (float(x) for x in cell["BLEU min–max"].split("–"))
        assert (lo, hi) == (min(float(r["bleu"]) for r in mine),
                            max(float(r["bleu"]) for r in mine))
    assert seeds_differ  # the two checkpoints decode differently: the means are not trivial
    assert (folder / "beam_sweep.png").stat().st_size > 5000

    # again: every result comes from the cache, nothing is loaded or decoded
    csv_before = (folder / "beam_sweep.csv").read_text(encoding="utf-8")
    decoded = []

    def no_load(run, args):
        raise AssertionError(f"{run} loaded again")

    monkeypatch.setattr(script, "load_for", no_load)
    assert script.main(argv) == 0
    assert (folder / "beam_sweep.csv").read_text(encoding="utf-8") == csv_before
    assert "12 of 12 (run, set) sweeps are cached" in capsys.readouterr().err

    # a checkpoint written again (a new modification time) is swept again, alone
    ckpt = out / "runs" / "mrt" / "seed1" / "last.pt"
    os.utime(ckpt, ns=(ckpt.stat().st_atime_ns, ckpt.stat().st_mtime_ns + 10 ** 9))
    from seq2seq.load import load_for_decoding

    monkeypatch.setattr(script, "load_for", lambda run, args: decoded.append(run) or
                        load_for_decoding(str(run.checkpoint), device="cpu"))
    assert script.main(argv) == 0
    assert [(r.setting, r.seed) for r in decoded] == [("mrt", 1)]
    assert (folder / "beam_sweep.csv").read_text(encoding="utf-8") == csv_before


def test_script_help_and_misuse(tiny, capsys):
    script = load_script()
    with pytest.raises(SystemExit):
        script.main(["--help"])
    assert "scripts/beam_sweep.py" in capsys.readouterr().out
    assert script.main([str(tiny / "nowhere"), "--settings", "mrt"]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tiny / "empty" / "runs" / "mrt").mkdir(parents=True, exist_ok=True)
    assert script.main([str(tiny / "empty"), "--settings", "linear"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "mrt" in err, err
    assert script.main([str(tiny / "empty"), "--settings", "mrt"]) == 2
    assert "no finished run" in capsys.readouterr().err
