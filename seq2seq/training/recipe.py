"""What every recipe does after building its config: train, decode the test split, score.

A recipe script (``recipes/*.py``) parses its options with :func:`parser` (the options of
``seq2seq train``, declared once in :mod:`seq2seq.cli.run_options`, with ``--beam`` and
``--extra-test``), builds its config (and, for toy tasks, its data as a
``datasets.DatasetDict``), and calls :func:`run`, which prints the scores with their sacreBLEU
signature and writes ``DIR/scores.json``:

- ``bleu``, ``chrf``, ``exact_match``, ``signature``, ``chrf_signature``, ``n``, ``truncated``
  (test outputs cut short by the output limit): the test split decoded as the config says
  (greedy by default);
- ``beam``: the same with ``--beam K`` beams (``size``, ``length_penalty``, ``bleu``, ...);
  with several sizes or length penalties, the pair with the best BLEU on the validation split
  (``chosen_on``, and each pair's validation BLEU in ``validation``): the test sets play no part
  in any choice;
- ``extra``: each ``--extra-test`` set, greedy and (``beam``) with ``--beam``;
- ``averaged``: with ``train.keep_last >= 2``, the average of the kept checkpoints
  (``DIR/averaged.pt``), greedy on the test split;
- ``train_seconds`` (training steps only: what ``train.max_minutes`` counts) and
  ``wall_seconds`` (everything: data, training, validation, decoding and scoring), both summed
  over the invocations that trained the run (``--resume`` adds to them; the decoding of an
  earlier invocation whose scores these replace is not counted), and ``peak_rss_mb`` (this
  process's peak resident memory): ``resumed`` says when an earlier invocation did part of the
  training.

:func:`main` runs a recipe with the toolkit's one error handler.
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

from seq2seq import config as config_mod
from seq2seq.cli.run_options import add_run_options
from seq2seq.cli.console import log, run_main
from seq2seq.data.readers import add_extra_test_option, read_test_set
from seq2seq.decoding.evaluate import evaluate_lines, evaluate_model, format_scores, read_split
from seq2seq.errors import UserError

from . import model_card
from .checkpoint import average
from .loop import train
from .run_folder import kept

TestSet = Tuple[str, List[str], List[str]]  # (name, sources, references)
SCORES = ("bleu", "chrf", "exact_match")


def parser(description: str, default_config, default_out: str,
           default_beam: int = 0) -> argparse.ArgumentParser:
    """A recipe's command line: ``--config`` (default: its YAML), ``--set``, ``--out``,
    ``--resume``, ``--no-progress``, ``--debug``, ``--beam``, ``--extra-test``."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p, str(default_config), default_out)
    p.add_argument("--beam", type=int, nargs="+", default=[default_beam], metavar="K",
                   help="also decode the test sets with beam search of K beams and score that "
                        f"(0: not; default: {default_beam}); several sizes: the one with the "
                        "best validation BLEU. Examples: --beam 5, --beam 5 10")
    p.add_argument("--length-penalty", type=float, nargs="+", default=None, metavar="A",
                   help="beam search: the length normalization exponent (default: the config's "
                        "decode.length_penalty); several: the one with the best validation BLEU, "
                        "chosen with the beam size. Example: --length-penalty 0.6 1.0 1.4")
    add_extra_test_option(p, "decoded and scored like the test split")
    return p


def load_config(args, extra_overrides=()) -> config_mod.Config:
    return config_mod.load(args.config, list(extra_overrides) + list(args.set))


def decoding(args) -> Dict[str, Any]:
    """:func:`run`'s ``beam``, ``length_penalty`` and ``extra_tests`` (read) from a recipe's
    command line."""
    if args.length_penalty and not any(k > 1 for k in args.beam):
        raise UserError("--length-penalty is for beam search: give --beam K with K > 1 too")
    if any(k < 0 for k in args.beam):
        raise UserError(f"--beam {' '.join(map(str, args.beam))}: sizes must be >= 0")
    tests = [read_test_set(text) for text in args.extra_test]
    names = [name for name, _, _ in tests]
    for name in names:
        if names.count(name) > 1 or name in ("test", "validation", "valid", "train"):
            raise UserError(f"--extra-test {name}=...: "
                            + ("given twice" if names.count(name) > 1 else
                               "the name of a split; call it something else") +
                            " (each set is written to NAME.hyp and scores.json's extra.NAME)")
    return {"beam": args.beam, "length_penalty": args.length_penalty or (),
            "extra_tests": tests}


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports KB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def _scores(s: Dict[str, Any]) -> Dict[str, Any]:
    return {k: s[k] for k in (*SCORES, "n", "truncated")}


def choose_beam(model, tok, cfg, dataset, device, progress: bool, sizes: Sequence[int],
                penalties: Sequence[float]) -> Dict[str, Any]:
    """The beam size and length penalty to decode the test sets with: the only pair given, or
    the pair with the best BLEU on the validation split (ties: the smaller beam, then the
    penalty nearest 1). ``{}`` when no size above 1 is asked for."""
    sizes = sorted({k for k in sizes if k > 1})
    penalties = list(dict.fromkeys(penalties or [cfg.decode.length_penalty]))
    grid = [(k, a) for k in sizes for a in penalties]
    if not grid:
        return {}
    if len(grid) == 1:
        return {"size": grid[0][0], "length_penalty": grid[0][1]}
    split = cfg.data.valid_split
    if not split:
        raise UserError("several --beam sizes or --length-penalty values are chosen on the "
                        "validation split, and the config has none (data.valid_split)")
    srcs, refs = read_split(cfg, split, dataset)
    tried = []
    for k, a in grid:
        bleu = evaluate_lines(model, tok, cfg, srcs, refs, split,
                              {"beam": k, "length_penalty": a}, device, progress).scores["bleu"]
        tried.append({"size": k, "length_penalty": a, "bleu": bleu})
        log(f"{split}, beam {k}, length penalty {a:g}: BLEU {bleu:.2f}")
    best = max(tried, key=lambda t: (t["bleu"], -t["size"], -abs(t["length_penalty"] - 1)))
    log(f"chosen on {split}: beam {best['size']}, length penalty {best['length_penalty']:g}")
    return {"size": best["size"], "length_penalty": best["length_penalty"], "chosen_on": split,
            "validation": tried}


def run(cfg, out, dataset=None, resume: bool = False, progress: bool = True,
        examples: int = 5, beam: Sequence[int] = (), extra_tests: Sequence[TestSet] = (),
        length_penalty: Sequence[float] = ()) -> Dict[str, Any]:
    """Train (starting again unless ``resume``), decode the test split (and ``extra_tests``),
    greedy as configured and with beam search (``beam`` sizes x ``length_penalty`` values,
    the pair with the best validation BLEU when there are several), and score them."""
    from seq2seq.load import load_for_decoding

    out = Path(out)
    summary = train(cfg, out, resume=resume, overwrite=not resume, dataset=dataset,
                    progress=progress)
    t0 = time.perf_counter() - summary["wall_seconds"]  # every invocation's training counts
    if summary["interrupted"]:
        raise KeyboardInterrupt
    model, tok, run_cfg, device = load_for_decoding(out, device=cfg.train.device)
    ev = evaluate_model(model, tok, run_cfg, dataset=dataset, device=device, progress=progress)
    (out / f"{ev.split}.hyp").write_text("".join(h + "\n" for h in ev.hyps), encoding="utf-8")
    s = ev.scores
    result = {**_scores(s), "signature": s["signature"], "chrf_signature": s["chrf_signature"],
              "train_seconds": round(summary["train_seconds"], 1), "steps": summary["steps"],
              "parameters": summary["parameters"], "split": ev.split,
              "output_limit": s["output_limit"]}
    shown = [(ev.split, s)]
    search = choose_beam(model, tok, run_cfg, dataset, device, progress, beam, length_penalty)
    by_beam = ({"beam": search["size"], "length_penalty": search["length_penalty"]}
               if search else None)

    def beam_scores(name, srcs, refs):
        b = evaluate_lines(model, tok, run_cfg, srcs, refs, name, by_beam, device,
                           progress).scores
        chosen = (f", chosen on {search['chosen_on']}" if "chosen_on" in search else "")
        shown.append((f"{name}, beam {by_beam['beam']} (length penalty "
                      f"{by_beam['length_penalty']:g}{chosen})", b))
        return {"size": search["size"], "length_penalty": search["length_penalty"],
                **_scores(b)}

    if by_beam:  # the choice (and its validation grid) once, with the test split's scores
        result["beam"] = {**search, **beam_scores(ev.split, ev.srcs, ev.refs)}
    for name, srcs, refs in extra_tests:
        e = evaluate_lines(model, tok, run_cfg, srcs, refs, name, None, device, progress)
        shown.append((name, e.scores))
        (out / f"{name}.hyp").write_text("".join(h + "\n" for h in e.hyps), encoding="utf-8")
        result.setdefault("extra", {})[name] = _scores(e.scores)
        if by_beam:
            result["extra"][name]["beam"] = beam_scores(name, srcs, refs)
    paths = kept(out)
    if cfg.train.keep_last >= 2 and len(paths) >= 2:  # also score the average of the kept ones
        average(paths, out / "averaged.pt")
        avg_model, _, avg_cfg, _ = load_for_decoding(out / "averaged.pt", device=device)
        s_avg = evaluate_model(avg_model, tok, avg_cfg, dataset=dataset, device=device,
                               progress=progress).scores
        result["averaged"] = {**_scores(s_avg), "checkpoints": [p.name for p in paths]}
        shown.append((f"{ev.split}, {out / 'averaged.pt'} (the average of "
                      f"{', '.join(p.name for p in paths)})", s_avg))
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)  # the whole run's
    result["resumed"] = resume  # True: peak_rss_mb is this invocation's
    result["peak_rss_mb"] = round(peak_rss_mb())
    (out / "scores.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    model_card.write(out)  # README.md: the card, now with the test scores
    for src, hyp, ref in list(zip(ev.srcs, ev.hyps, ev.refs))[:examples]:
        print(f"  src: {src}\n  hyp: {hyp}\n  ref: {ref}\n")
    for name, scores in shown:
        print(f"{name}: " + format_scores(scores))
    print(f"training: {summary['steps']} steps, {summary['train_seconds'] / 60:.1f} min; "
          f"{summary['parameters'] / 1e6:.2f}M parameters; all in all "
          f"{result['wall_seconds'] / 60:.1f} min (data, training, validation, decoding), peak "
          f"memory {result['peak_rss_mb'] / 1024:.2f} GB; scores in {out / 'scores.json'}")
    return result


def main(fn: Callable[[Any], Any], args, prog: str) -> int:
    """Run ``fn(args)`` with the toolkit's error handling (one line, no traceback)."""
    return run_main(prog, lambda: fn(args), args.debug,
                    "run again with --resume to continue")
