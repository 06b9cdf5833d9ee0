"""A model card: ``README.md`` in a run folder and in an exported folder, saying what the model
is for someone who will not read ``config.yaml`` and ``metrics.jsonl`` (Hugging Face's
convention): the task and data, the model and its training, the budget and why it stopped, the
scores with their sacreBLEU signatures, a few translations, the commands that use it, its limits.

    after_training(summary, corpus)   # the end of a run (seq2seq.training.loop.train)
    write("runs/x")                   # again, from the folder's files (recipes: the test scores)
    render(read("runs/x"))            # the markdown, from records, with no file written

Written from the folder's files, so any writer gives the same card:

    DIR/config.yaml      the settings
    DIR/metrics.jsonl    the validation records (the best one, as best.pt was chosen)
    DIR/summary.json     the end of training: budget spent, stop reason, data sizes, dropped
                         pairs, the validation's sacreBLEU signatures, example translations
    DIR/scores.json      a recipe's test scores (seq2seq.training.recipe), when there are any
    DIR/export.json      an exported folder (seq2seq export): then the run's facts come from
                         the checkpoint's folder, its scores only when best.pt was exported
"""

import json
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional

import yaml

from seq2seq import __version__

from .validation import score_key

CARD = "README.md"
SUMMARY = "summary.json"
EXAMPLES = 3  # validation sentences translated for the card
STOPS = {  # summary["stopped_by"] -> what it means
    "budget": "train.epochs or train.max_steps spent",
    "time budget": "train.max_minutes spent",
    "early stopping": "train.patience validations in a row without a gain",
    "signal": "Ctrl-C or SIGTERM: interrupted; continue it with --resume",
}


class Records(NamedTuple):
    """What a card is written from: a folder's files, read (see the module docstring)."""

    folder: str  # the folder as the card's commands name it
    config: Dict[str, Any]  # config.yaml: sections of plain values
    records: List[Dict[str, Any]]  # metrics.jsonl (empty: not the run's best.pt)
    summary: Dict[str, Any]  # summary.json ({}: none)
    scores: Dict[str, Any]  # scores.json ({}: none)
    export: Dict[str, Any]  # export.json ({}: a run folder)


def _json(path: Path) -> Dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _records(path: Path) -> List[Dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]


def read(folder, shown_as: Optional[str] = None) -> Records:
    """A run folder's or an exported folder's records (``shown_as``: its name in commands)."""
    folder = Path(folder)
    config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    export = _json(folder / "export.json")
    run = Path(export["checkpoint"]).parent if export.get("checkpoint") else folder
    summary = _json(run / SUMMARY) if (run / "config.yaml").is_file() else {}
    records, scores = _records(run / "metrics.jsonl"), _json(run / "scores.json")
    if export and Path(export.get("checkpoint", "")).name != "best.pt":  # not what was scored
        records, scores = [], {}
        summary.pop("examples", None)
    return Records(shown_as or str(folder), config, records, summary, scores, export)


def write(folder, shown_as: Optional[str] = None) -> Path:
    """Write (or rewrite) ``folder/README.md`` from the folder's files; returns its path."""
    path = Path(folder) / CARD
    path.write_text(render(read(folder, shown_as)), encoding="utf-8")
    return path


def after_training(summary: Dict[str, Any], corpus, main: bool = True) -> Dict[str, Any]:
    """The end of a run (rank 0 only: ``main``): ``summary.json`` (``summary``, the data's
    sizes and what the length filter dropped, the validation's signatures, a few validation
    sentences translated by the run's best checkpoint) and the card. Returns ``summary``."""
    if not main:
        return summary
    from seq2seq.decoding.evaluate import score

    out, L, valid = Path(summary["out"]), corpus.lengths, corpus.valid
    s = score(["-"], ["-"])  # the signatures of the scorer the validation uses
    facts = {**summary, "signature": s["signature"], "chrf_signature": s["chrf_signature"],
             "data": {"train_read": L.total, "train_kept": L.total - L.empty - L.long,
                      "dropped_empty": L.empty, "dropped_long": L.long, "max_len": L.max_len,
                      "max_len_learned": L.learned, "longest": L.longest,
                      "streamed": corpus.cfg.data.streaming,
                      "valid": len(valid.src) if valid is not None else 0,
                      "vocab": [corpus.tokenizer.src_vocab_size,
                                corpus.tokenizer.tgt_vocab_size]},
             "output_limit": L.output_limit._asdict(),
             "examples": [] if summary["interrupted"] or valid is None else
             _translate(out, corpus.cfg.train.device, valid.src_text[:EXAMPLES],
                        valid.tgt_text[:EXAMPLES])}
    (out / SUMMARY).write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    write(out)
    return summary


def _translate(run, device: str, srcs: List[str], refs: List[str]) -> List[Dict[str, str]]:
    """``srcs`` translated as ``seq2seq translate --checkpoint RUN`` translates them (its best
    output only, where the config asks for ``decode.n_best``)."""
    from seq2seq.decoding.evaluate import decode_config
    from seq2seq.decoding.search import translate
    from seq2seq.load import load_for_decoding

    model, tok, cfg, dev = load_for_decoding(run, device=device)
    opts = decode_config(cfg, {"n_best": 1}, model)
    hyps = translate(model, tok, srcs, opts, device=dev, warn=False).hyps
    return [{"source": s, "output": h, "reference": r} for s, h, r in zip(srcs, hyps, refs)]


# -- the markdown -------------------------------------------------------------------------


def cell(x: Any) -> str:
    """A value as one markdown table cell (pipes escaped, one line)."""
    return str(x).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def table(head: List[str], rows: List[List[Any]]) -> List[str]:
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows])


def score_row(name: str, split: str, s: Dict[str, Any]) -> List[Any]:
    """A scores table row: ``name | split | sentences | BLEU | chrF | exact match | cut short``."""
    return [name, split, s["n"], f"{s['bleu']:.2f}", f"{s['chrf']:.2f}",
            f"{s['exact_match']:.2f}", s.get("truncated", "")]


SCORE_HEAD = ["decoding", "split", "sentences", "BLEU", "chrF", "exact match %", "cut short"]


def render(r: Records) -> str:
    """The card's markdown (a pure function of the records)."""
    c, sm, d = r.config, r.summary, r.summary.get("data", {})
    data, m = c["data"], c["model"]
    pair = f"{data['src']} → {data['tgt']}"
    what = (f"an exported model (ONNX Runtime, {'int8' if r.export.get('int8') else 'float32'})"
            if r.export else "a training run")
    out = [f"# {Path(r.folder).name}: {m['cell'].upper()} encoder-decoder, {pair}", "",
           f"Model card of {what}, written by seq2seq {__version__} from the folder's files "
           "(`seq2seq/training/model_card.py`).", ""]
    out += _task(r, data, d, pair) + _model(c, sm) + _scores(r, sm) + _examples(sm)
    out += _use(r, sm) + _limits(r, c, sm, d, pair)
    return "\n".join(out) + "\n"


def _task(r: Records, data, d, pair: str) -> List[str]:
    if not data.get("path"):
        source = ("a `datasets.DatasetDict` given in memory (a recipe's own data, e.g. the "
                  "toy tasks that `recipes/toy.py` generates)")
    elif data["path"] in ("json", "csv", "parquet", "text"):
        source = f"{data['path']} files: `{json.dumps(data.get('data_files'))}`"
    else:
        source = f"the Hugging Face hub dataset `{data['path']}`" + (
            f", config `{data['name']}`" if data.get("name") else "")
    lines = ["## Task and data", "",
             f"- Task: translation from the `{data['src']}` column to the `{data['tgt']}` "
             f"column ({pair}), one sentence per line.", f"- Data: {source}.",
             f"- Splits: train `{data['train_split']}`, validation `{data['valid_split']}`, "
             f"test `{data['test_split']}`."]
    if d:
        first = " (of the first chunk: the training split is streamed)" if d["streamed"] else ""
        how = "learned from the data" if d["max_len_learned"] else "data.max_len"
        lines += [f"- Training pairs{first}: {d['train_read']} read, {d['train_kept']} kept; "
                  f"dropped by the length filter: {d['dropped_empty']} with an empty side, "
                  f"{d['dropped_long']} longer than {d['max_len']} pieces ({how}; the longest "
                  f"pair has {d['longest']}).",
                  f"- Validation pairs: {d['valid']}. Vocabulary: {d['vocab'][0]} source and "
                  f"{d['vocab'][1]} target pieces."]
    if r.export:
        lines.append(f"- Exported from `{r.export.get('checkpoint') or '(a model in memory)'}`.")
    return lines + [""]


def _model(c, sm) -> List[str]:
    m, t, tf = c["model"], c["train"], c["teacher_forcing"]
    params = f", {sm['parameters'] / 1e6:.2f}M parameters" if sm.get("parameters") else ""
    lines = ["## Model and training", "",
             f"{m['cell'].upper()} encoder-decoder ({m['impl']} layers), {m['attention']} "
             f"attention{params}; tokenizer: sentencepiece {c['tokenizer']['model_type']}"
             f"{', joint' if c['tokenizer']['joint'] else ''}.", ""]
    keys = [("model", k, v) for k, v in m.items()] + [("train", k, v) for k, v in t.items()]
    keys += [("teacher_forcing", k, v) for k, v in tf.items()]
    lines += ["<details><summary>Every setting (config.yaml)</summary>", ""]
    lines += table(["setting", "value"], [[f"{s}.{k}", v] for s, k, v in keys])
    lines += ["", "</details>", ""]
    budget = ", ".join(f"train.{k}={t[k]}" for k in ("epochs", "max_steps", "max_minutes")
                       if t.get(k) is not None)
    lines.append(f"- Budget: {budget}.")
    if sm:
        secs = sm["train_seconds"]
        took = f"{secs:.1f} seconds" if secs < 60 else f"{secs / 60:.1f} minutes"
        lines += [f"- Spent: {sm['steps']} steps, {sm['epochs']:g} epochs, {took} of training.",
                  f"- Stopped by: {sm['stopped_by']} ({STOPS.get(sm['stopped_by'], '')})."]
    else:
        lines.append("- Stopped by: not recorded (no summary.json: the run did not finish).")
    return lines + [""]


def _scores(r: Records, sm) -> List[str]:
    lines = ["## Scores", ""]
    if r.export:
        chk = r.export.get("check", {})
        if chk:
            lines += [f"The export was checked against the checkpoint on {chk['lines']}: greedy "
                      f"outputs identical on {chk['greedy_identical']}/{chk['sentences']}.", ""]
        if not r.records:
            return lines + ["No scores recorded for the checkpoint exported (a run's scores "
                            "are those of its best.pt).", ""]
        lines += ["The scores of the checkpoint exported (PyTorch, float32):", ""]
    scored = [x for x in r.records if "valid_bleu" in x]
    if scored:
        b = max(scored, key=score_key)
        at_most = r.config["train"]["valid_max_sentences"]  # the sentences BLEU is computed on
        n = min(at_most, sm["data"]["valid"]) if "data" in sm else f"at most {at_most}"
        v = {"n": n, "bleu": b["valid_bleu"],
             "chrf": b["valid_chrf"], "exact_match": b["valid_exact_match"],
             "truncated": b.get("valid_truncated", "")}
        lines += [f"Validation (greedy, during training; the best of {len(scored)} "
                  f"validations, step {b['step']}, as best.pt was chosen; loss "
                  f"{b['valid_loss']:.3f}, perplexity {b['valid_ppl']:.2f}):", ""]
        lines += table(SCORE_HEAD, [score_row("greedy", r.config["data"]["valid_split"], v)])
        if sm.get("signature"):
            lines += ["", f"BLEU signature: `{sm['signature']}`  ",
                      f"chrF signature: `{sm['chrf_signature']}`"]
        lines.append("")
    s = r.scores
    if s:
        rows = [score_row("greedy", s["split"], s)]
        if "beam" in s:
            b = s["beam"]
            rows.append(score_row(f"beam {b['size']}, length penalty {b['length_penalty']:g}"
                                  + (f" (chosen on {b['chosen_on']})" if "chosen_on" in b
                                     else ""), s["split"], b))
        if "averaged" in s:
            rows.append(score_row("greedy, averaged.pt (" + ", ".join(
                s["averaged"]["checkpoints"]) + ")", s["split"], s["averaged"]))
        for name, e in s.get("extra", {}).items():
            rows.append(score_row("greedy", name, e))
            if "beam" in e:
                rows.append(score_row(f"beam {e['beam']['size']}", name, e["beam"]))
        lines += ["Test (scores.json, written by the recipe):", ""] + table(SCORE_HEAD, rows)
        lines += ["", f"BLEU signature: `{s['signature']}`  ",
                  f"chrF signature: `{s['chrf_signature']}`", ""]
    if not scored and not s:
        lines += ["No scores yet (no validation split, and no test scores in scores.json).", ""]
    return lines + ["Scores are comparable only with the same sacreBLEU signature.", ""]


def _examples(sm) -> List[str]:
    ex = sm.get("examples") or []
    if not ex:
        return []
    return (["## Examples", "", "The first validation sentences, as `seq2seq translate` "
             "translates them with this model's decoding settings:", ""]
            + table(["source", "output", "reference"],
                    [[e["source"], e["output"], e["reference"]] for e in ex]) + [""])


def _use(r: Records, sm) -> List[str]:
    f = r.folder
    example = (sm.get("examples") or [{"source": "..."}])[0]["source"]
    cli = [f"seq2seq translate --checkpoint {f} --input source.txt   # one sentence per line",
           f"seq2seq translate --checkpoint {f} --beam 5 < source.txt",
           f"seq2seq evaluate --checkpoint {f} --split test",
           f"seq2seq serve --checkpoint {f}   # a page and POST /translate on port 8000"]
    if not r.export:
        cli.append(f"seq2seq export --checkpoint {f} --out {f}-onnx   # ONNX Runtime")
    return (["## Use", "", "```bash"] + cli + ["```", "", "```python",
            "from seq2seq import Translator", "",
            f"print(Translator.load({_py(f)}).translate({_py(example)}))", "```", ""])


def _py(text: str) -> str:
    """A Python string literal in double quotes."""
    return json.dumps(text, ensure_ascii=False)


def _limits(r: Records, c, sm, d, pair: str) -> List[str]:
    dec, lim = c["decode"], sm.get("output_limit")
    if dec.get("max_len_a") is not None and dec.get("max_len_b") is not None:
        limit = (f"{dec['max_len_a']:g} * source pieces + {dec['max_len_b']} pieces "
                 "(decode.max_len_a/b)")
    elif lim:
        limit = (f"{lim['a']:g} * source pieces + {lim['b']} pieces (learned from the "
                 "training pairs)")
    else:
        limit = "a number of pieces learned from the training data (in the checkpoint)"
    cut = (f"; {r.scores['truncated']} of {r.scores['n']} test outputs stopped at it"
           if r.scores else "")
    lines = ["## Limits", "",
             f"- Language pair: {pair} only: input in another language gives meaningless "
             "output.",
             "- Domain: the training data above; expect lower scores on text unlike it.",
             f"- Sources longer than {dec['max_src_len']} pieces are cut (decode.max_src_len), "
             "with a warning."]
    if d:
        lines.append(f"- Trained on pairs of at most {d['max_len']} pieces per side: longer "
                     "sentences were never seen.")
    lines.append(f"- Output limit: an output stops after {limit}{cut}.")
    return lines
