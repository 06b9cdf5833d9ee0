"""The ``seq2seq`` command: train, translate, evaluate, average, compare-tf.

Errors a user can fix are printed as one line on stderr with exit status 2 (``--debug``
shows the traceback instead), by :func:`seq2seq.console.run_main` as in every entry point.
The options shared with the recipes (:func:`add_run_options`) and between ``translate`` and
``evaluate`` (:func:`add_decode_options`) are declared once, here.
"""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import __version__
from .console import run_main
from .errors import UserError


def add_debug(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def add_run_options(p: argparse.ArgumentParser, default_config: Optional[str] = None,
                    default_out: Optional[str] = None) -> None:
    """The options of a training run, for ``seq2seq train`` and every recipe script:
    ``--config``, ``--set``, ``--out``, ``--resume``, ``--no-progress``, ``--debug``."""
    p.add_argument("--config", default=default_config, metavar="FILE.yaml",
                   help="YAML config (see recipes/*.yaml); " + (
                       f"default: {default_config}" if default_config else "without it, the "
                       "defaults"))
    p.add_argument("--set", action="append", default=[], metavar="a.b=c",
                   help="override a config key, e.g. --set model.hidden_size=256 (repeatable)")
    p.add_argument("--out", required=default_out is None, default=default_out, metavar="DIR",
                   help="run folder for checkpoints, metrics.jsonl and curves.png"
                   + (f" (default: {default_out})" if default_out else ""))
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_debug(p)


def _add_encoding(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--encoding-errors", choices=["strict", "replace"], default="strict",
                   help=f"bytes in {what} that are not UTF-8: stop with an error naming the "
                        "file and line (strict), or replace them with U+FFFD (replace)")


def _count(lo: int):
    """An argparse type: an integer >= ``lo``."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v
    return parse


def _nonnegative(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return v


DECODE_OPTIONS = ("beam", "length_penalty", "n_best", "max_len_a", "max_len_b", "batch_size",
                  "bf16")


def add_decode_options(p: argparse.ArgumentParser, n_best: bool = True) -> None:
    """``--impl``, ``--device`` and the options that override the checkpoint's ``decode``
    config section (:class:`seq2seq.config.DecodeConfig`), declared once for ``translate``
    and ``evaluate``; :func:`decode_overrides` collects them."""
    p.add_argument("--impl", choices=["manual", "fused"],
                   help="decode with this layer implementation (the weights fit both)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--beam", type=_count(1), metavar="N",
                   help="beam search with N beams; 1: greedy search (default: decode.beam of "
                        "the checkpoint's config, 1 unless set)")
    p.add_argument("--length-penalty", type=_nonnegative, metavar="A",
                   help="GNMT length normalization exponent for beam search (0: none; "
                        "default: decode.length_penalty, 1.0)")
    if n_best:
        p.add_argument("--n-best", type=_count(1), metavar="K",
                       help="write the K best hypotheses of the beam, K lines per input line "
                            "(K <= --beam)")
    p.add_argument("--max-len-a", type=_nonnegative, metavar="A",
                   help="stop an output after A * source pieces + B pieces (default: "
                        "decode.max_len_a of the checkpoint's config, else the limit learned "
                        "from the training data, printed when it was trained)")
    p.add_argument("--max-len-b", type=_count(0), metavar="B",
                   help="(default: decode.max_len_b, else learned from the training data)")
    p.add_argument("--batch-size", type=_count(1), metavar="N",
                   help="sentences per batch (default from the config)")
    p.add_argument("--bf16", action="store_const", const=True, default=None,
                   help="decode under bfloat16 autocast: about 1.3x faster on CPUs with bf16 "
                        "instructions (AVX512-BF16, AMX) and on GPUs, slower on other CPUs; "
                        "outputs may differ slightly (Multi30k: BLEU -0.1)")


def decode_overrides(args) -> Dict[str, Any]:
    """The decode options given on the command line, as ``decode`` config keys."""
    return {k: getattr(args, k, None) for k in DECODE_OPTIONS}


_LINE_BREAKS = dict.fromkeys(map(ord, "\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029"), " ")


def _write_lines(lines: List[str], path: Optional[str]) -> None:
    """One line per item, to ``path`` or stdout; any line break inside an item becomes a space
    (whatever a reader counts as a line end: ``\\r``, U+2028, ...), so line counts always match."""
    text = "".join(h.translate(_LINE_BREAKS) + "\n" for h in lines)
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}") from None


def _read_input(path: Optional[str], errors: str, what: str = "input file") -> List[str]:
    from .readers import read_lines, split_lines

    if path is None or path == "-":
        return split_lines(sys.stdin.buffer.read(), "stdin", errors)
    return read_lines(path, errors, what)


def cmd_train(args) -> int:
    from . import config

    cfg = config.load(args.config, args.set)  # config errors come before the slow imports
    from .train import train

    if args.device:
        import dataclasses

        cfg = cfg.replace(train=dataclasses.replace(cfg.train, device=args.device))
    summary = train(cfg, args.out, resume=args.resume, overwrite=args.overwrite,
                    progress=not args.no_progress, encoding_errors=args.encoding_errors)
    best = summary["best"]
    if "valid_bleu" in best:
        print(f"best validation BLEU {best['valid_bleu']:.2f} at step {best['step']} "
              f"(greedy, sacreBLEU {__import__('sacrebleu').__version__}); "
              f"checkpoints in {args.out}")
    return 130 if summary["interrupted"] else 0


def cmd_translate(args) -> int:
    from .checkpoint import load_model
    from .decode import translate
    from .device import pick_device, set_threads
    from .evaluate import decode_options

    if args.output and not Path(args.output).resolve().parent.is_dir():
        raise UserError(f"cannot write --output {args.output}: its folder does not exist")
    set_threads(args.threads)
    device = pick_device(args.device)
    model, tok, cfg = load_model(args.checkpoint, args.impl, device)
    opts = decode_options(cfg, decode_overrides(args))
    if args.attention_plot and opts.beam > 1:
        raise UserError("--attention-plot works with greedy search (--beam 1) only")
    lines = _read_input(args.input, args.encoding_errors)
    result = translate(model, tok, lines, opts, device=device, progress=args.output is not None,
                       return_attention=args.attention_plot is not None)
    hyps, maps = result if args.attention_plot is not None else (result, None)
    if opts.n_best > 1:  # n_best lines per input line
        hyps = [h for n_best in hyps for h in n_best]
    _write_lines(hyps, args.output)
    if maps is not None:
        from .plots import attention_maps

        n = attention_maps(maps, args.attention_plot)
        print(f"wrote {n} attention plot(s) to {args.attention_plot}", file=sys.stderr)
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate_checkpoint, format_scores, score

    if args.hyp or args.ref:
        if not (args.hyp and args.ref):
            raise UserError("evaluate needs both --hyp and --ref (or --checkpoint)")
        hyps = _read_input(args.hyp, args.encoding_errors, "hypothesis file")
        refs = _read_input(args.ref, args.encoding_errors, "reference file")
        if len(hyps) != len(refs):
            raise UserError(f"{args.hyp} has {len(hyps)} lines but {args.ref} has {len(refs)}")
        if not refs:
            raise UserError(f"{args.hyp} and {args.ref} are empty: nothing to score")
        s = score(hyps, refs)
    elif args.checkpoint:
        ev = evaluate_checkpoint(args.checkpoint, args.split, decode=decode_overrides(args),
                                 impl=args.impl, device=args.device, progress=True,
                                 errors=args.encoding_errors)
        if args.output:
            _write_lines(ev.hyps, args.output)
        s = ev.scores
    else:
        raise UserError("evaluate needs --checkpoint, or --hyp and --ref")
    print(json.dumps(s, indent=2) if args.json else format_scores(s))
    return 0


def cmd_average(args) -> int:
    from .checkpoint import average
    from .run_folder import kept

    paths = list(args.checkpoints)
    if args.last < 0:
        raise UserError(f"--last must be >= 0, got {args.last}")
    if len(paths) == 1 and Path(paths[0]).is_dir():
        found = kept(paths[0])
        if not found:
            raise UserError(f"{paths[0]} holds no step-N.pt checkpoints (train with "
                            "--set train.keep_last=N to keep them)")
        paths = found[-args.last:] if args.last else found
    average(paths, args.out)
    print(f"averaged {len(paths)} checkpoints into {args.out}: "
          + ", ".join(Path(p).name for p in paths), file=sys.stderr)
    return 0


def cmd_compare_tf(args) -> int:
    from .compare.study import run

    run(args)
    return 0


EPILOG_TRAIN = """examples:
  seq2seq train --config my.yaml --out runs/my
  seq2seq train --config my.yaml --set model.cell=gru --set train.max_steps=2000 --out runs/gru
  seq2seq train --config my.yaml --out runs/gru --resume      # continue an interrupted run

Ctrl-C (or SIGTERM) saves a checkpoint at the end of the current step; --resume continues it.
The run folder gets last.pt, best.pt, config.yaml, metrics.jsonl and curves.png."""

EPILOG_TRANSLATE = """examples:
  echo "a c e g" | seq2seq translate --checkpoint runs/reverse
  seq2seq translate --checkpoint runs/my --input test.de --output test.hyp --beam 5
  seq2seq translate --checkpoint runs/my --beam 5 --n-best 3 < test.de   # 3 lines per input

Decoding options not given come from the checkpoint's config (its decode section)."""


def build_parser() -> argparse.ArgumentParser:
    from .compare.options import add_arguments as add_compare_arguments

    p = argparse.ArgumentParser(
        prog="seq2seq",
        description="RNN (LSTM/GRU) encoder-decoder translation: train on parallel text, "
                    "translate with greedy or beam search, score with sacreBLEU, compare "
                    "teacher-forcing schedules.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="run 'seq2seq COMMAND --help' for the options of each command")
    p.add_argument("--version", action="version", version=f"seq2seq {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a model from a YAML config",
                       description="Train a model: data -> sentencepiece -> bucketed batches -> "
                                   "Adam, validating with greedy BLEU.",
                       epilog=EPILOG_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(t)
    t.add_argument("--overwrite", action="store_true",
                   help="start again even if --out already holds a run")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides train.device")
    _add_encoding(t, "plain-text, JSON or CSV data files")
    t.set_defaults(fn=cmd_train)

    tr = sub.add_parser("translate", help="translate text with a trained model (greedy or beam)",
                        description="Greedy or beam search, one output line per input line (K "
                                    "with --n-best K), in order; an empty input line gives an "
                                    "empty output line.",
                        epilog=EPILOG_TRANSLATE,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("--checkpoint", required=True, metavar="DIR_OR_FILE",
                    help="a run folder (uses best.pt, else last.pt) or a .pt file")
    tr.add_argument("--input", metavar="FILE", help="input text, one sentence per line "
                    "(default: stdin)")
    tr.add_argument("--output", metavar="FILE", help="where to write (default: stdout)")
    add_decode_options(tr)
    tr.add_argument("--threads", type=_count(0), default=0, help="torch threads (0: default)")
    _add_encoding(tr, "the input")
    tr.add_argument("--attention-plot", metavar="DIR",
                    help="also write a PNG heatmap of the attention weights per sentence")
    add_debug(tr)
    tr.set_defaults(fn=cmd_translate)

    e = sub.add_parser("evaluate", help="score translations with sacreBLEU BLEU, chrF and "
                       "exact match",
                       description="Score --hyp against --ref, or decode a split of the "
                                   "checkpoint's data and score it.")
    e.add_argument("--checkpoint", metavar="DIR_OR_FILE", help="decode and score this model")
    e.add_argument("--split", help="split to decode (default: data.test_split)")
    e.add_argument("--hyp", metavar="FILE", help="hypotheses, one per line")
    e.add_argument("--ref", metavar="FILE", help="references, one per line")
    e.add_argument("--output", metavar="FILE", help="with --checkpoint: save the hypotheses")
    add_decode_options(e, n_best=False)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    _add_encoding(e, "--hyp, --ref or the data")
    add_debug(e)
    e.set_defaults(fn=cmd_evaluate)

    a = sub.add_parser("average", help="average the weights of the last checkpoints of a run",
                       description="Average model weights of several checkpoints of one run "
                                   "(a cheap, well-known gain). Train with --set "
                                   "train.keep_last=N to keep the last N validation checkpoints.")
    a.add_argument("--checkpoints", nargs="+", required=True, metavar="PATH",
                   help="checkpoint files, or one run folder (uses its step-N.pt files)")
    a.add_argument("--last", type=int, default=0, metavar="N",
                   help="with a run folder: only its last N step checkpoints")
    a.add_argument("--out", required=True, metavar="FILE", help="the averaged checkpoint")
    add_debug(a)
    a.set_defaults(fn=cmd_average)

    c = sub.add_parser("compare-tf", help="compare teacher-forcing ratios and schedules "
                       "(one model per setting and seed; table and plots)")
    add_compare_arguments(c)
    c.set_defaults(fn=cmd_compare_tf)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    hint = ("run the same command again to continue (finished runs are reused)"
            if args.command == "compare-tf" else "")
    return run_main(f"seq2seq {args.command}", lambda: args.fn(args), args.debug, hint)


if __name__ == "__main__":
    sys.exit(main())
