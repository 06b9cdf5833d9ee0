"""recipes/multi30k.py run as a user runs it, on a tiny stand-in for the raw Multi30k files:
the test splits it finds in --data-dir are scored greedy and with the beam, into scores.json."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS = "ein mann hund frau kind ball spielt läuft auf dem der die".split()


def write_split(d: Path, stem: str, n: int, rng: random.Random) -> None:
    src = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))) for _ in range(n)]
    (d / f"{stem}.de").write_text("".join(s + "\n" for s in src), encoding="utf-8")
    (d / f"{stem}.en").write_text("".join(" ".join(reversed(s.split())) + "\n" for s in src),
                                  encoding="utf-8")


def test_scores_every_flickr_test_set_it_finds(tmp_path):
    rng, data = random.Random(0), tmp_path / "m30k"
    data.mkdir()
    for stem, n in (("train", 200), ("val", 20), ("test_2016_flickr", 15),
                    ("test_2017_flickr", 12)):  # no test_2018_flickr: it is left out
        write_split(data, stem, n, rng)
    out = tmp_path / "run"
    p = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "multi30k.py"), "--data-dir", str(data),
         "--out", str(out), "--no-progress", "--beam", "2", "3", "--length-penalty", "0.5", "1.5",
         "--set", "train.max_steps=120",
         "--set", "train.lr=0.005",
         "--set", "model.hidden_size=16", "--set", "model.embedding_dim=16",
         "--set", "tokenizer.vocab_size=120", "--set", "train.threads=1",
         "--set", "train.keep_last=0"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.returncode == 0, p.stderr
    scores = json.loads((out / "scores.json").read_text())
    assert scores["split"] == "test" and scores["n"] == 15
    # the beam size and length penalty: the pair with the best validation BLEU
    beam = scores["beam"]
    tried = beam["validation"]
    assert beam["chosen_on"] == "validation" and len(tried) == 4
    assert {(t["size"], t["length_penalty"]) for t in tried} == {(2, .5), (2, 1.5), (3, .5),
                                                                 (3, 1.5)}
    best = max(t["bleu"] for t in tried)
    assert [t for t in tried if (t["size"], t["length_penalty"]) ==
            (beam["size"], beam["length_penalty"])][0]["bleu"] == best
    assert list(scores["extra"]) == ["test_2017_flickr"]
    extra = scores["extra"]["test_2017_flickr"]
    assert extra["n"] == 12 and extra["beam"]["n"] == 12 and 0 <= extra["beam"]["bleu"] <= 100
    assert extra["beam"]["size"] == beam["size"]
    k = beam["size"]
    a = f"{beam['length_penalty']:g}"
    for line in ("test: BLEU", f"test, beam {k} (length penalty {a}, chosen on validation): BLEU",
                 "test_2017_flickr: BLEU", f"test_2017_flickr, beam {k} (length penalty {a}",
                 "peak memory"):
        assert line in p.stdout, line
    assert "Traceback" not in p.stderr
    assert "chosen on validation: beam" in p.stderr  # with each pair's validation BLEU


def test_recipe_options_that_cannot_work_are_refused(tmp_path):
    """A length penalty without beam search, and an extra test set named like a split or given
    twice: one line each, before any training."""
    rng, data = random.Random(0), tmp_path / "m30k"
    data.mkdir()
    for stem in ("train", "val", "test_2016_flickr", "x"):
        write_split(data, stem, 10, rng)
    extra = f"{data / 'x.de'},{data / 'x.en'}"
    for args, words in ((["--beam", "1", "--length-penalty", "0.6"], "--length-penalty is for"),
                        (["--extra-test", f"test={extra}"], "the name of a split"),
                        (["--extra-test", f"a={extra}", "--extra-test", f"a={extra}"],
                         "given twice")):
        p = subprocess.run([sys.executable, str(ROOT / "recipes" / "multi30k.py"), "--data-dir",
                            str(data), "--out", str(tmp_path / "run"), *args],
                           capture_output=True, text=True, cwd=tmp_path, timeout=120,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert p.returncode != 0 and words in p.stderr, (args, p.stderr)
        assert "Traceback" not in p.stderr and not (tmp_path / "run").exists()
