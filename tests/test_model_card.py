"""The model card (README.md) of a run folder and of an exported folder: written at the end of
training, rewritten with a recipe's test scores and by ``seq2seq export``. Its numbers are read
back out of the markdown and compared with metrics.jsonl and scores.json."""

import json
import re
import shutil
from typing import Dict, List, Tuple

import pytest
import sacrebleu

from conftest import seq2seq
from seq2seq import config
from seq2seq.training import model_card, recipe
from test_cli import toy  # noqa: F401  (the CLI's tiny run, trained once for the module)

Table = Tuple[str, List[Dict[str, str]]]  # (the line that introduces it, rows as dicts)


def tables(text: str) -> List[Table]:
    """The card's markdown tables, each with the line above it; cells unescaped."""
    out: List[Table] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("| ") and lines[i + 1].startswith("|---"):
            caption = next(l for l in reversed(lines[:i]) if l.strip())
            head = split_row(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("| "):
                cells = split_row(lines[i])
                assert len(cells) == len(head), lines[i]
                rows.append(dict(zip(head, cells)))
                i += 1
            out.append((caption, rows))
        else:
            i += 1
    return out


def split_row(line: str) -> List[str]:
    cells = re.split(r"(?<!\\) \| ", line.strip()[2:-2])  # "| a | b |" -> a, b; "\|" stays
    return [c.replace("\\|", "|").replace("\\\\", "\\") for c in cells]


def table(text: str, caption_start: str) -> List[Dict[str, str]]:
    found = [rows for caption, rows in tables(text) if caption.startswith(caption_start)]
    assert len(found) == 1, (caption_start, [c for c, _ in tables(text)])
    return found[0]


def assert_scores(row: Dict[str, str], s) -> None:
    """A card's scores row equals scores ``s`` (BLEU, chrF, exact match, sentences)."""
    assert float(row["BLEU"]) == s["bleu"] and float(row["chrF"]) == s["chrf"]
    assert float(row["exact match %"]) == s["exact_match"] and int(row["sentences"]) == s["n"]


def best_record(run):
    records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    return max(records, key=lambda r: (r["valid_bleu"], r["valid_chrf"], -r["valid_loss"]))


def test_a_training_run_writes_its_card(toy):
    card = (toy.run / "README.md").read_text(encoding="utf-8")
    best = best_record(toy.run)
    (row,) = table(card, "Validation")
    assert_scores(row, {"bleu": best["valid_bleu"], "chrf": best["valid_chrf"],
                        "exact_match": best["valid_exact_match"], "n": 12})  # 12 pairs < 20
    assert f"step {best['step']}," in card and f"loss {best['valid_loss']:.3f}" in card
    for name, metric in (("BLEU", sacrebleu.BLEU()), ("chrF", sacrebleu.CHRF())):
        metric.corpus_score(["a"], [["a"]])  # sacreBLEU's signature once it has scored
        assert f"{name} signature: `{metric.get_signature()}`" in card
    assert "- Stopped by: budget (train.epochs or train.max_steps spent)." in card
    assert "- Spent: 40 steps" in card and "train.max_steps=40" in card
    assert "- Training pairs: 96 read, 96 kept; dropped by the length filter: 0" in card
    assert "en → de" in card and "json files" in card and "valid.jsonl" in card
    settings = {r["setting"]: r["value"] for r in table(card, "<details><summary>Every setting")}
    assert settings["model.cell"] == "gru" and settings["train.lr"] == "0.03"
    assert f"seq2seq translate --checkpoint {toy.run} " in card
    assert f'Translator.load("{toy.run}").translate("' in card
    assert "## Limits" in card and "Output limit: an output stops after" in card
    assert "Test (scores.json" not in card  # no recipe ran: no test scores claimed
    summary = json.loads((toy.run / "summary.json").read_text())
    assert summary["stopped_by"] == "budget" and summary["steps"] == 40


def test_the_examples_are_what_translate_gives(toy):
    rows = table((toy.run / "README.md").read_text(encoding="utf-8"), "The first validation")
    assert len(rows) == model_card.EXAMPLES
    sources = [r["source"] for r in rows]
    p = seq2seq("translate", "--checkpoint", toy.run, input="\n".join(sources) + "\n",
                cwd=toy.dir)
    assert [r["output"] for r in rows] == p.stdout.splitlines()


def test_a_recipe_rewrites_the_card_with_its_test_scores(toy, tmp_path):
    cfg = config.load(toy.cfg, [])
    out = tmp_path / "run"
    recipe.run(cfg, out, progress=False, beam=[2])
    scores = json.loads((out / "scores.json").read_text())
    card = (out / "README.md").read_text(encoding="utf-8")
    greedy, beam = table(card, "Test (scores.json")
    assert greedy["decoding"] == "greedy" and greedy["split"] == scores["split"] == "test"
    assert_scores(greedy, scores)
    assert int(greedy["cut short"]) == scores["truncated"]
    assert beam["decoding"].startswith("beam 2, length penalty 1")
    assert_scores(beam, scores["beam"])
    assert card.count(f"BLEU signature: `{scores['signature']}`") == 2  # validation and test
    (val,) = table(card, "Validation")
    assert float(val["BLEU"]) == best_record(out)["valid_bleu"]


def test_an_exported_folder_has_its_card(toy, tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "exported"
    seq2seq("export", "--checkpoint", toy.run, "--out", out, cwd=toy.dir)
    card = (out / "README.md").read_text(encoding="utf-8")
    run_card = (toy.run / "README.md").read_text(encoding="utf-8")
    assert "Model card of an exported model (ONNX Runtime, float32)" in card
    assert table(card, "Validation") == table(run_card, "Validation")
    assert table(card, "The first validation") == table(run_card, "The first validation")
    check = json.loads((out / "export.json").read_text())["check"]
    assert f"greedy outputs identical on {check['greedy_identical']}/" in card
    assert f"seq2seq serve --checkpoint {out}" in card and "seq2seq export" not in card
    assert "- Stopped by: budget" in card and f"Exported from `{toy.run / 'best.pt'}`" in card


def test_an_export_of_another_checkpoint_claims_no_scores(toy, tmp_path):
    """Scores and examples are best.pt's: a card for last.pt shows neither."""
    folder = tmp_path / "exported"
    folder.mkdir()
    shutil.copy(toy.run / "config.yaml", folder)
    (folder / "export.json").write_text(json.dumps({"checkpoint": str(toy.run / "last.pt")}))
    card = model_card.render(model_card.read(folder))
    assert "No scores recorded for the checkpoint exported" in card
    assert not [c for c, _ in tables(card) if c.startswith(("Validation", "The first"))]
    assert "- Stopped by: budget" in card  # the run's facts still hold


@pytest.mark.parametrize("reason", sorted(model_card.STOPS))
def test_every_stop_reason_is_named(toy, reason):
    r = model_card.read(toy.run)
    card = model_card.render(r._replace(summary={**r.summary, "stopped_by": reason}))
    assert f"- Stopped by: {reason} ({model_card.STOPS[reason]})." in card


def test_table_cells_survive_pipes_and_newlines(toy):
    r = model_card.read(toy.run)
    ex = [{"source": "a | b", "output": "c\\|d", "reference": "e\nf"}]
    rows = table(model_card.render(r._replace(summary={**r.summary, "examples": ex})),
                 "The first validation")
    assert rows == [{"source": "a | b", "output": "c\\|d", "reference": "e f"}]
