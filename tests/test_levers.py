"""scripts/levers.py on a tiny stand-in for Multi30k: two levers run side by side, a table with
the difference from the reference, the two levers read off the reference's runs, and a second
call that reuses the finished runs."""

import random
import subprocess
import sys
from pathlib import Path

from test_multi30k_recipe import write_split

ROOT = Path(__file__).resolve().parents[1]


def test_levers_table_and_resume(tmp_path):
    rng, data = random.Random(1), tmp_path / "m30k"
    data.mkdir()
    for stem, n in (("train", 200), ("val", 20), ("test_2016_flickr", 15),
                    ("test_2017_flickr", 12), ("test_2018_flickr", 10)):
        write_split(data, stem, n, rng)
    cmd = [sys.executable, str(ROOT / "scripts" / "levers.py"), "--data-dir", str(data),
           "--out", str(tmp_path / "levers"), "--levers", "baseline",
           "--lever", "narrow=model.hidden_size=8", "--minutes", "5", "--jobs", "2",
           "--set", "train.max_steps=20", "--set", "model.hidden_size=16",
           "--set", "model.embedding_dim=16", "--set", "tokenizer.vocab_size=120"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    md = (tmp_path / "levers" / "levers.md").read_text()
    rows = [l for l in md.splitlines() if l.startswith("| ")]
    assert rows[0].startswith("| lever | seeds | BLEU | beam 5 | 2017 |")
    assert rows[1].startswith("| baseline | 1 |") and "(reference)" in rows[1]
    assert rows[2].startswith("| narrow | 1 |")
    assert rows[3].startswith("| baseline + checkpoint average | 1 |")
    assert rows[4].startswith("| baseline + beam chosen on validation (beam ")
    assert all(r.count("|") == rows[0].count("|") for r in rows)
    narrow = (tmp_path / "levers" / "narrow" / "seed1")
    assert "model.hidden_size=8" in (narrow / "command.txt").read_text()
    assert (tmp_path / "levers" / "levers.png").stat().st_size > 1000
    # again: nothing to train; another command over the same folder is refused
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "2 of 2 runs finished already" in again.stderr
    other = subprocess.run(cmd[:-1] + ["tokenizer.vocab_size=100"], capture_output=True,
                           text=True, timeout=600)
    assert other.returncode != 0 and "holds a run of another command" in other.stderr
    assert "Traceback" not in other.stderr


def _count(path: Path, text: str) -> int:
    return path.read_text().count(text) if path.is_file() else 0


def test_a_failed_run_stops_the_others_and_a_stopped_run_resumes(tmp_path):
    """One lever fails at once (a config key that does not exist) while the other starts: the
    script says which failed and stops the other. A run stopped while it trains saves its
    checkpoint, and the next call starts it again with --resume."""
    import os
    import time

    rng, data = random.Random(1), tmp_path / "m30k"
    data.mkdir()
    for stem, n in (("train", 200), ("val", 20), ("test_2016_flickr", 15)):
        write_split(data, stem, n, rng)
    out = tmp_path / "levers"
    cmd = [sys.executable, str(ROOT / "scripts" / "levers.py"), "--data-dir", str(data),
           "--out", str(out), "--levers", "baseline", "--lever", "broken=model.no_such_key=1",
           "--jobs", "2", "--set", "train.max_steps=1000000", "--set", "train.epochs=100000",
           "--set", "train.patience=0",
           "--set", "model.hidden_size=16", "--set", "model.embedding_dim=16",
           "--set", "tokenizer.vocab_size=120"]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode != 0 and "broken seed 1 failed" in p.stderr, p.stderr[-1500:]
    assert "Traceback" not in p.stderr and time.time() - t0 < 300
    base, log = out / "baseline" / "seed1", out / "baseline" / "seed1.log"
    time.sleep(1)
    alive = subprocess.run(["pgrep", "-f", str(base)], capture_output=True, text=True).stdout
    assert alive.strip() == "", "the other run was left training"
    # the broken lever dropped: the baseline trains (from its checkpoint, if the failure
    # stopped it after its first step); stopped while it trains, it saves one
    alone = cmd[:cmd.index("--lever")] + cmd[cmd.index("--jobs"):]
    for stops in (1, 2):
        run = subprocess.Popen(alone, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        before, t1 = _count(log, "valid loss"), time.time()
        while _count(log, "valid loss") <= before:
            assert time.time() - t1 < 240 and run.poll() is None, "the baseline did not train"
            time.sleep(0.5)
        run.send_signal(15)
        run.wait(timeout=300)
        assert (base / "last.pt").is_file() and _count(log, "stopped by SIGTERM") >= stops
    assert "resumed from" in log.read_text()
    os.sync()


def test_every_lever_changes_the_recipe():
    """A lever whose overrides the recipe already has would rerun the baseline under
    another name: each one must change recipes/multi30k.yaml's config."""
    import importlib.util

    from seq2seq import config

    spec = importlib.util.spec_from_file_location("levers", ROOT / "scripts" / "levers.py")
    levers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(levers)
    recipe = ROOT / "recipes" / "multi30k.yaml"
    base = config.load(recipe).to_dict()
    for name, sets in levers.LEVERS.items():
        for s in sets if name != "baseline" else ():
            assert config.load(recipe, [s]).to_dict() != base, f"{name}: {s} is the recipe's"
