"""What every recipe does after building its config: train, decode the test split, score.

A recipe script (``recipes/*.py``) parses its options with :func:`parser` (the options of
``seq2seq train``, declared once in :mod:`seq2seq.cli`), builds its config (and, for toy
tasks, its data as a ``datasets.DatasetDict``), and calls :func:`run`, which writes
``DIR/scores.json`` (``bleu``, ``chrf``, ``exact_match``, ``signature``, ``train_seconds``,
``truncated``: test outputs cut short by the output limit) and prints the scores with their
sacreBLEU signature. With ``train.keep_last >= 2`` it also averages the kept checkpoints into
``DIR/averaged.pt`` and scores that too (``scores.json``'s ``averaged``). :func:`main` runs a recipe with the toolkit's one error handler.
"""

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Dict

from . import config as config_mod
from .checkpoint import average
from .cli import add_run_options
from .console import run_main
from .evaluate import evaluate_checkpoint, format_scores
from .run_folder import kept
from .train import train


def parser(description: str, default_config, default_out: str) -> argparse.ArgumentParser:
    """A recipe's command line: ``--config`` (default: its YAML), ``--set``, ``--out``,
    ``--resume``, ``--no-progress``, ``--debug``."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p, str(default_config), default_out)
    return p


def load_config(args, extra_overrides=()) -> config_mod.Config:
    return config_mod.load(args.config, list(extra_overrides) + list(args.set))


def run(cfg, out, dataset=None, resume: bool = False, progress: bool = True,
        examples: int = 5) -> Dict[str, Any]:
    """Train (starting again unless ``resume``), decode the test split, score it."""
    out = Path(out)
    summary = train(cfg, out, resume=resume, overwrite=not resume, dataset=dataset,
                    progress=progress)
    if summary["interrupted"]:
        raise KeyboardInterrupt
    ev = evaluate_checkpoint(out, dataset=dataset, device=cfg.train.device, progress=progress)
    (out / f"{ev.split}.hyp").write_text("".join(h + "\n" for h in ev.hyps), encoding="utf-8")
    s = ev.scores
    result = {"bleu": s["bleu"], "chrf": s["chrf"], "exact_match": s["exact_match"],
              "signature": s["signature"], "chrf_signature": s["chrf_signature"],
              "train_seconds": round(summary["train_seconds"], 1), "steps": summary["steps"],
              "parameters": summary["parameters"], "split": ev.split, "n": s["n"],
              "truncated": s["truncated"], "output_limit": s["output_limit"]}
    paths = kept(out)
    if cfg.train.keep_last >= 2 and len(paths) >= 2:  # also score the average of the kept ones
        average(paths, out / "averaged.pt")
        s_avg = evaluate_checkpoint(out / "averaged.pt", dataset=dataset,
                                    device=cfg.train.device, progress=progress).scores
        result["averaged"] = {"bleu": s_avg["bleu"], "chrf": s_avg["chrf"],
                              "exact_match": s_avg["exact_match"],
                              "checkpoints": [p.name for p in paths]}
    (out / "scores.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for src, hyp, ref in list(zip(ev.srcs, ev.hyps, ev.refs))[:examples]:
        print(f"  src: {src}\n  hyp: {hyp}\n  ref: {ref}\n")
    print(f"{ev.split}: " + format_scores(s))
    if "averaged" in result:
        print(f"{ev.split}, {out / 'averaged.pt'} (the average of "
              f"{', '.join(p.name for p in paths)}): " + format_scores(s_avg))
    print(f"training: {summary['steps']} steps, {summary['train_seconds'] / 60:.1f} min; "
          f"{summary['parameters'] / 1e6:.2f}M parameters; scores in {out / 'scores.json'}")
    return result


def main(fn: Callable[[Any], Any], args, prog: str) -> int:
    """Run ``fn(args)`` with the toolkit's error handling (one line, no traceback)."""
    return run_main(prog, lambda: fn(args), args.debug,
                    "run again with --resume to continue")
