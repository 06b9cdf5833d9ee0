"""What every recipe does after building its config: train, decode the test split, score.

A recipe script (``recipes/*.py``) parses ``--out`` and ``--set`` with :func:`parser`, builds
its config (and, for toy tasks, its data as a ``datasets.DatasetDict``), and calls :func:`run`,
which writes ``DIR/scores.json`` (``bleu``, ``chrf``, ``exact_match``, ``signature``,
``train_seconds``) and prints the scores with their sacreBLEU signature. With
``train.keep_last >= 2`` it also averages the kept checkpoints into ``DIR/averaged.pt`` and
scores that too (``scores.json``'s ``averaged``).
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict

from . import config as config_mod
from .checkpoint import average, kept, load_model
from .data import load_splits
from .decode import translate
from .errors import UserError
from .evaluate import format_scores, score
from .train import pick_device, train


def parser(description: str, default_config: Path, default_out: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(default_config), metavar="FILE.yaml",
                   help=f"the recipe's config (default: {default_config.name} beside the script)")
    p.add_argument("--set", action="append", default=[], metavar="a.b=c",
                   help="override a config key, e.g. --set train.max_steps=500 (repeatable)")
    p.add_argument("--out", default=default_out, metavar="DIR",
                   help=f"run folder (default: {default_out})")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def load_config(args, extra_overrides=()) -> config_mod.Config:
    return config_mod.load(args.config, list(extra_overrides) + list(args.set))


def run(cfg, out, dataset=None, resume: bool = False, progress: bool = True,
        examples: int = 5) -> Dict[str, Any]:
    """Train (starting again unless ``resume``), decode the test split greedily, score it."""
    out = Path(out)
    summary = train(cfg, out, resume=resume, overwrite=not resume, dataset=dataset,
                    progress=progress)
    if summary["interrupted"]:
        raise KeyboardInterrupt
    device = pick_device(cfg.train.device)
    model, tok, cfg = load_model(out, device=device)
    split = cfg.data.test_split
    if not split:
        raise UserError("the recipe's config has no data.test_split to score")
    srcs, refs = load_splits(cfg.data, [split], dataset)[split]
    decode = lambda m: translate(m, tok, srcs, cfg.decode.batch_size, cfg.decode.max_len_a,
                                 cfg.decode.max_len_b, device=device, progress=progress)
    hyps = decode(model)
    (out / f"{split}.hyp").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    s = score(hyps, refs)
    result = {"bleu": s["bleu"], "chrf": s["chrf"], "exact_match": s["exact_match"],
              "signature": s["signature"], "chrf_signature": s["chrf_signature"],
              "train_seconds": round(summary["train_seconds"], 1), "steps": summary["steps"],
              "parameters": summary["parameters"], "split": split, "n": s["n"]}
    paths = kept(out)
    if cfg.train.keep_last >= 2 and len(paths) >= 2:  # also score the average of the kept ones
        average(paths, out / "averaged.pt")
        s_avg = score(decode(load_model(out / "averaged.pt", device=device)[0]), refs)
        result["averaged"] = {"bleu": s_avg["bleu"], "chrf": s_avg["chrf"],
                              "exact_match": s_avg["exact_match"],
                              "checkpoints": [p.name for p in paths]}
    (out / "scores.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for src, hyp, ref in list(zip(srcs, hyps, refs))[:examples]:
        print(f"  src: {src}\n  hyp: {hyp}\n  ref: {ref}\n")
    print(f"{split}: " + format_scores(s))
    if "averaged" in result:
        print(f"{split}, {out / 'averaged.pt'} (the average of {', '.join(p.name for p in paths)}"
              f"): " + format_scores(s_avg))
    print(f"training: {summary['steps']} steps, {summary['train_seconds'] / 60:.1f} min; "
          f"{summary['parameters'] / 1e6:.2f}M parameters; scores in {out / 'scores.json'}")
    return result


def main(fn, args) -> int:
    """Run ``fn(args)`` with the CLI's error handling (one line, no traceback)."""
    try:
        fn(args)
        return 0
    except UserError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run again with --resume to continue", file=sys.stderr)
        return 130
