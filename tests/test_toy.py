"""The toy tasks (seq2seq.data.toy) and their recipe: generated data, configs, one run as a user
runs it."""

import datetime
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from seq2seq import config

from seq2seq.data import toy as toy_tasks

RECIPES = ROOT / "recipes"
TOY = list(toy_tasks.TASKS)
SMALL = dict(train_size=300, valid_size=50, test_size=100)


def load_script(name):
    """Import ``recipes/NAME.py`` under a private module name."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(dd, split):
    return list(zip(dd[split]["src"], dd[split]["tgt"]))


# -- the generators ----------------------------------------------------------------------

GENERATORS = {
    "reverse": lambda seed: toy_tasks.reverse(seed=seed, **SMALL),
    "copy": lambda seed: toy_tasks.reverse(seed=seed, task="copy", **SMALL),
    "sort": lambda seed: toy_tasks.sort(seed=seed, **SMALL),
    "dates": lambda seed: toy_tasks.dates(seed=seed, **SMALL),
    "words2digits": lambda seed: toy_tasks.numbers(seed=seed, **SMALL),
    "digits2words": lambda seed: toy_tasks.numbers(seed=seed, direction="digits2words", **SMALL),
    "commands": lambda seed: toy_tasks.commands(seed=seed, **SMALL),
}


@pytest.mark.parametrize("task", sorted(GENERATORS))
def test_generators_are_deterministic_given_the_seed(task):
    a, b, c = GENERATORS[task](7), GENERATORS[task](7), GENERATORS[task](8)
    assert list(a) == ["train", "validation", "test"]
    for split, n in zip(a, (300, 50, 100)):
        assert a[split].column_names == ["src", "tgt"]
        assert len(a[split]) == n
        assert a[split].to_dict() == b[split].to_dict()
    assert a["train"].to_dict() != c["train"].to_dict()


def _disjoint(dd, key):
    seen = {}
    for split in dd:
        keys = {key(s, t) for s, t in rows(dd, split)}
        assert len(keys) == len(dd[split]), f"repeated items within {split}"
        for other, ks in seen.items():
            assert not keys & ks, f"{split} and {other} share items"
        seen[split] = keys


def test_reverse_and_copy_targets_and_disjoint_splits():
    dd = toy_tasks.reverse(seed=3, **SMALL)
    for src, tgt in rows(dd, "train") + rows(dd, "test"):
        assert tgt.split() == src.split()[::-1]
        assert 3 <= len(src.split()) <= 15
    _disjoint(dd, lambda s, t: s)
    for src, tgt in rows(toy_tasks.reverse(seed=3, task="copy", **SMALL), "train"):
        assert tgt == src


def test_sort_targets_and_disjoint_splits():
    dd = toy_tasks.sort(seed=3, **SMALL)
    for src, tgt in rows(dd, "train") + rows(dd, "test"):
        xs, ys = [int(x) for x in src.split()], [int(y) for y in tgt.split()]
        assert ys == sorted(xs) and all(0 <= x <= 99 for x in xs)
    _disjoint(dd, lambda s, t: s)


_ORDINAL = re.compile(r"\b(\d{1,2})(st|nd|rd|th)\b")


def parse_date(text: str) -> datetime.date:
    """An independent reading of the seven formats (day first; two-digit years 1950-2049)."""
    m = re.fullmatch(r"(\d\d)/(\d\d)/(\d\d)", text)
    if m:
        yy = int(m.group(3))
        return datetime.date(1900 + yy if yy >= 50 else 2000 + yy, int(m.group(2)),
                             int(m.group(1)))
    t = _ORDINAL.sub(r"\1", text).replace(" of ", " ")
    for fmt in ("%d %B %Y", "%B %d, %Y", "%b %d %Y", "%A, %d %B %Y", "%d.%m.%Y"):
        try:
            d = datetime.datetime.strptime(t, fmt).date()
        except ValueError:
            continue
        if fmt.startswith("%A"):
            assert text.split(",")[0] == d.strftime("%A"), f"wrong weekday in {text!r}"
        return d
    raise AssertionError(f"no known date format matches {text!r}")


def test_dates_parse_to_their_iso_target():
    dd = toy_tasks.dates(seed=3, train_size=2000, valid_size=50, test_size=100)
    for src, tgt in rows(dd, "train") + rows(dd, "test"):
        assert parse_date(src) == datetime.date.fromisoformat(tgt), src
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", tgt)
        assert "1950-01-01" <= tgt <= "2049-12-31"
    srcs = dd["train"]["src"]
    assert any(re.fullmatch(r"\d+(st|nd|rd|th) of [A-Z][a-z]+ \d{4}", s) for s in srcs)
    assert any(re.fullmatch(r"[A-Z][a-z]+ \d+, \d{4}", s) for s in srcs)
    assert any(re.fullmatch(r"\d\d/\d\d/\d\d", s) for s in srcs)
    assert len({toy_tasks.DATE_FORMATS[f](datetime.date(2021, 3, 3))
                for f in toy_tasks.DATE_FORMATS}) == len(toy_tasks.DATE_FORMATS)
    assert toy_tasks.DATE_FORMATS["ordinal_of"](datetime.date(2021, 3, 3)) == "3rd of March 2021"
    assert toy_tasks.DATE_FORMATS["month_day"](datetime.date(2021, 3, 3)) == "March 3, 2021"
    assert toy_tasks.DATE_FORMATS["dd/mm/yy"](datetime.date(2021, 3, 3)) == "03/03/21"
    _disjoint(dd, lambda s, t: t)  # a date is in one split only, whatever its format


def test_ordinal_suffixes():
    assert [toy_tasks.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]


_SMALL_WORDS = {w: i for i, w in enumerate(toy_tasks.ONES)}
_SMALL_WORDS.update({w: 10 * i for i, w in enumerate(toy_tasks.TENS) if w})


def words_to_number(text: str) -> int:
    """An independent parser for the number words (a test oracle, not the generator)."""
    total = current = 0
    for word in text.replace("-", " ").split():
        if word == "and":
            continue
        if word == "hundred":
            current *= 100
        elif word == "thousand":
            total, current = (total + current) * 1000, 0
        else:
            current += _SMALL_WORDS[word]
    return total + current


def test_number_words_examples_and_round_trip():
    w = toy_tasks.number_to_words
    assert w(0) == "zero" and w(45) == "forty-five" and w(80) == "eighty"
    assert w(312) == "three hundred and twelve"
    assert w(1012) == "one thousand and twelve"
    assert w(1312) == "one thousand three hundred and twelve"
    assert w(100000) == "one hundred thousand"
    assert w(999999) == "nine hundred and ninety-nine thousand nine hundred and ninety-nine"
    for n in list(range(0, 2000)) + list(range(2000, 1_000_000, 97)) + [999_999]:
        assert words_to_number(w(n)) == n, n
    with pytest.raises(ValueError):
        w(1_000_000)


def test_numbers_datasets_round_trip_and_are_disjoint():
    dd = toy_tasks.numbers(seed=3, **SMALL)
    for src, tgt in rows(dd, "train") + rows(dd, "test"):
        assert words_to_number(src) == int(tgt) and tgt == str(int(tgt))
    assert {len(t) for t in dd["train"]["tgt"]} == set(range(1, 7))
    _disjoint(dd, lambda s, t: t)
    back = toy_tasks.numbers(seed=3, direction="digits2words", **SMALL)
    assert rows(back, "test") == [(t, s) for s, t in rows(dd, "test")]


def execute(command: str):
    """An independent interpreter of the commands grammar (a test oracle, not the generator)."""
    if " and " in command:
        first, second = command.split(" and ")
        return execute(first) + execute(second)
    if " after " in command:
        first, second = command.split(" after ")
        return execute(second) + execute(first)
    words = command.split()
    times = {"twice": 2, "thrice": 3}.get(words[-1], 1)
    words = words[:-1] if times > 1 else words
    verb, way = words[0], words[1:]
    act = [] if verb == "turn" else ["I_" + verb.upper()]
    if not way:
        once = act
    else:
        turn = "I_TURN_" + way[-1].upper()
        reps, turns = {"around": (4, 1), "opposite": (1, 2)}.get(way[0], (1, 1))
        once = ([turn] * turns + act) * reps
    return once * times


def test_commands_follow_the_grammar_and_are_long():
    dd = toy_tasks.commands(seed=3, train_size=2000, valid_size=50, test_size=100)
    out_lens = []
    for src, tgt in rows(dd, "train") + rows(dd, "test"):
        assert tgt.split() == execute(src), src
        assert 1 <= len(src.split()) <= 9
        out_lens.append(len(tgt.split()))
    assert max(out_lens) >= 40 and min(out_lens) <= 3  # long outputs, and short ones
    assert len(toy_tasks.command_phrases()) == 102
    assert max(len(v) for v in toy_tasks.command_phrases().values()) == 24
    symbols = {w for _, t in rows(dd, "train") for w in t.split()}
    assert "I_TURN_LEFT" in symbols and all(re.fullmatch(r"I_[A-Z_]+", w) for w in symbols)
    _disjoint(dd, lambda s, t: s)


def test_length_generalization_tests_on_longer_inputs_than_it_trains_on():
    lo, hi = toy_tasks.LENGTH_GENERALIZATION["train"]
    test_lo, test_hi = toy_tasks.LENGTH_GENERALIZATION["test"]
    dd = toy_tasks.dataset("length_generalization", seed=1)
    seen = [len(s.split()) for split in ("train", "validation") for s in dd[split]["src"]]
    test = [len(s.split()) for s in dd["test"]["src"]]
    assert max(seen) == hi and min(seen) == lo and min(test) > max(seen)
    assert set(test) == set(range(test_lo, test_hi + 1))
    out = toy_tasks.by_length(["a b c", "a b c", "a b"], ["c b a", "c b", "b a"],
                       ["c b a", "c b a", "b a"])
    assert out == {2: {"n": 1, "exact_match": 100.0, "output_length": 2.0},
                   3: {"n": 2, "exact_match": 50.0, "output_length": 2.5}}


def test_make_splits_refuses_more_items_than_exist():
    with pytest.raises(ValueError, match="distinct"):
        toy_tasks.reverse(seed=1, vocab=2, min_len=1, max_len=2, train_size=10, valid_size=1,
                          test_size=1)


# -- scripts and configs ------------------------------------------------------------------

@pytest.mark.parametrize("name", TOY)
def test_recipe_config_is_valid_and_commented(name):
    path = RECIPES / toy_tasks.TASKS[name][1]
    assert load_script("toy").build_parser().parse_args([name]).task == name
    config.load(path, ["train.threads=1"])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#")
    header = [l for l in lines if l.startswith("#")]
    assert any(f"python recipes/toy.py {name} --out runs/{name}" in l for l in header), name
    for line in lines:
        if re.match(r"\s+\w+:\s*\S", line):  # a key with a value: it says what it is
            assert " # " in line, f"{path.name}: no comment on {line.strip()!r}"


def test_recipe_scripts_do_not_shadow_the_standard_library():
    # running recipes/X.py puts recipes/ first on sys.path: a numbers.py there breaks torch
    for p in RECIPES.glob("*.py"):
        assert p.stem not in sys.stdlib_module_names, p.name


def test_toy_recipe_needs_a_known_task(tmp_path):
    p = subprocess.run([sys.executable, str(RECIPES / "toy.py"), "revers", "--out", "x"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 2 and "invalid choice: 'revers'" in p.stderr
    assert "Traceback" not in p.stderr


def test_reverse_recipe_end_to_end(tmp_path):
    out = tmp_path / "run"
    (tmp_path / "again.src").write_text("".join(f"{' '.join('abcdefg'[:i])}\n" for i in range(1, 8)))
    (tmp_path / "again.tgt").write_text("".join(f"{' '.join('gfedcba'[7 - i:])}\n"
                                                for i in range(1, 8)))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run(
        [sys.executable, str(RECIPES / "toy.py"), "reverse", "--out", str(out), "--no-progress",
         "--set", "train.max_steps=30", "--set", "train.eval_every=10",
         "--set", "train.keep_last=2",
         "--set", "train.threads=1", "--set", "model.hidden_size=32",
         "--set", "model.embedding_dim=16", "--beam", "3",
         "--extra-test", "again=again.src,again.tgt"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    scores = json.loads((out / "scores.json").read_text())
    for key in ("bleu", "chrf", "exact_match", "train_seconds", "wall_seconds", "peak_rss_mb"):
        assert isinstance(scores[key], (int, float)), key
    assert scores["wall_seconds"] > scores["train_seconds"] and 50 < scores["peak_rss_mb"] < 3000
    # --beam: the test split with 3 beams; --extra-test: scored greedy and with the beam
    assert scores["beam"]["size"] == 3 and 0 <= scores["beam"]["bleu"] <= 100
    again = scores["extra"]["again"]
    assert again["n"] == 7 and again["beam"]["size"] == 3
    assert len((out / "again.hyp").read_text().splitlines()) == 7
    assert "test, beam 3 (length penalty 1): BLEU" in p.stdout
    assert "again, beam 3 (length penalty 1): BLEU" in p.stdout
    assert scores["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert scores["steps"] == 30 and scores["n"] == 1000
    assert (scores["toy_task"], scores["data_seed"]) == ("reverse", 1)  # for seq2seq evaluate
    assert "BLEU signature: nrefs:1" in p.stdout
    assert len((out / "test.hyp").read_text().splitlines()) == 1000
    # keep_last: the last two checkpoints are averaged and scored too
    avg = scores["averaged"]
    assert avg["checkpoints"] == ["step-20.pt", "step-30.pt"] and 0 <= avg["bleu"] <= 100
    assert (out / "averaged.pt").is_file() and "the average of step-20.pt, step-30.pt" in p.stdout
