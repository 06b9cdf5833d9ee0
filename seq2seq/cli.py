"""The ``seq2seq`` command: train, translate, evaluate, compare-tf.

Errors a user can fix are printed as one line on stderr with exit status 2 (``--debug``
shows the traceback instead).
"""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

from . import __version__
from .errors import UserError

EPILOG_TRAIN = """examples:
  seq2seq train --config recipes/reverse.yaml --out runs/reverse
  seq2seq train --config my.yaml --set model.cell=gru --set train.max_steps=2000 --out runs/gru
  seq2seq train --config my.yaml --out runs/gru --resume      # continue an interrupted run

Ctrl-C (or SIGTERM) saves a checkpoint at the end of the current step; --resume continues it.
The run folder gets last.pt, best.pt, config.yaml, metrics.jsonl and curves.png."""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def _read_input(path: Optional[str], errors: str) -> List[str]:
    from .data import read_lines

    if path is None or path == "-":
        raw = sys.stdin.buffer.read()
        lines = raw.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        out = []
        for n, b in enumerate(lines, 1):
            try:
                out.append(b.decode("utf-8", errors=errors).rstrip("\r"))
            except UnicodeDecodeError as e:
                raise UserError(f"stdin line {n}: bytes that are not UTF-8 ({e.reason}); "
                                "use --encoding-errors replace to replace them") from None
        return out
    return read_lines(path, errors)


def _device(name: str):
    from .train import pick_device

    return pick_device(name)


def cmd_train(args) -> int:
    from . import config
    from .train import train

    cfg = config.load(args.config, args.set)
    if args.device:
        import dataclasses

        cfg = cfg.replace(train=dataclasses.replace(cfg.train, device=args.device))
    summary = train(cfg, args.out, resume=args.resume, overwrite=args.overwrite,
                    progress=not args.no_progress)
    best = summary["best"]
    if "valid_bleu" in best:
        print(f"best validation BLEU {best['valid_bleu']:.2f} at step {best['step']} "
              f"(greedy, sacreBLEU {__import__('sacrebleu').__version__}); "
              f"checkpoints in {args.out}")
    return 130 if summary["interrupted"] else 0


def cmd_translate(args) -> int:
    import torch

    from .checkpoint import load_model
    from .decode import translate

    if args.beam < 1 or not 1 <= args.n_best <= args.beam:
        raise UserError(f"need --beam >= 1 and 1 <= --n-best <= --beam (got --beam {args.beam}, "
                        f"--n-best {args.n_best})")
    if args.attention_plot and args.beam > 1:
        raise UserError("--attention-plot works with greedy search (--beam 1) only")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = _device(args.device)
    model, tok, cfg = load_model(args.checkpoint, args.impl, device)
    lines = _read_input(args.input, args.encoding_errors)
    a = cfg.decode.max_len_a if args.max_len_a is None else args.max_len_a
    b = cfg.decode.max_len_b if args.max_len_b is None else args.max_len_b
    result = translate(model, tok, lines, args.batch_size or cfg.decode.batch_size, a, b,
                       device=device, progress=args.output is not None,
                       return_attention=args.attention_plot is not None, beam=args.beam,
                       length_penalty=args.length_penalty, n_best=args.n_best)
    hyps, maps = result if args.attention_plot is not None else (result, None)
    if args.n_best > 1:  # n_best lines per input line
        hyps = ["\n".join(h) for h in hyps]
    text = "".join(h + "\n" for h in hyps)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if maps is not None:
        from .plots import attention_maps

        n = attention_maps(maps, args.attention_plot)
        print(f"wrote {n} attention plot(s) to {args.attention_plot}", file=sys.stderr)
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import format_scores, score

    if args.hyp or args.ref:
        if not (args.hyp and args.ref):
            raise UserError("evaluate needs both --hyp and --ref (or --checkpoint)")
        hyps = _read_input(args.hyp, "strict")
        refs = _read_input(args.ref, "strict")
        if len(hyps) != len(refs):
            raise UserError(f"{args.hyp} has {len(hyps)} lines but {args.ref} has {len(refs)}")
    elif args.checkpoint:
        from .checkpoint import load_model
        from .data import load_splits
        from .decode import translate

        device = _device(args.device)
        model, tok, cfg = load_model(args.checkpoint, args.impl, device)
        split = args.split or cfg.data.test_split
        if not split:
            raise UserError("no split to evaluate: give --split or set data.test_split")
        srcs, refs = load_splits(cfg.data, [split])[split]
        hyps = translate(model, tok, srcs, cfg.decode.batch_size, cfg.decode.max_len_a,
                         cfg.decode.max_len_b, device=device, progress=True, beam=args.beam,
                         length_penalty=args.length_penalty)
        if args.output:
            Path(args.output).write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    else:
        raise UserError("evaluate needs --checkpoint, or --hyp and --ref")
    s = score(hyps, refs)
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print(format_scores(s))
    return 0


def cmd_compare_tf(args) -> int:
    scripts = Path(__file__).resolve().parent.parent / "scripts" / "compare_teacher_forcing.py"
    if not scripts.is_file():
        raise UserError("compare-tf needs scripts/compare_teacher_forcing.py from the source tree")
    import runpy

    sys.argv = [str(scripts)] + args.rest
    runpy.run_path(str(scripts), run_name="__main__")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seq2seq",
        description="RNN (LSTM/GRU) encoder-decoder translation: train on parallel text, "
                    "translate with greedy search, score with sacreBLEU.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="run 'seq2seq COMMAND --help' for the options of each command")
    p.add_argument("--version", action="version", version=f"seq2seq {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a model from a YAML config",
                       description="Train a model: data -> sentencepiece -> bucketed batches -> "
                                   "Adam, validating with greedy BLEU.",
                       epilog=EPILOG_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--config", metavar="FILE.yaml", help="YAML config (see recipes/*.yaml); "
                   "without it, the defaults")
    t.add_argument("--set", action="append", default=[], metavar="a.b=c",
                   help="override a config key, e.g. --set model.hidden_size=256 (repeatable)")
    t.add_argument("--out", required=True, metavar="DIR", help="run folder for checkpoints, "
                   "metrics.jsonl and curves.png")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--overwrite", action="store_true",
                   help="start again even if --out already holds a run")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides train.device")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_common(t)
    t.set_defaults(fn=cmd_train)

    tr = sub.add_parser("translate", help="translate text with a trained model (greedy)",
                        description="Greedy decoding, one output line per input line, in order; "
                                    "an empty input line gives an empty output line.")
    tr.add_argument("--checkpoint", required=True, metavar="DIR_OR_FILE",
                    help="a run folder (uses best.pt, else last.pt) or a .pt file")
    tr.add_argument("--input", metavar="FILE", help="input text, one sentence per line "
                    "(default: stdin)")
    tr.add_argument("--output", metavar="FILE", help="where to write (default: stdout)")
    tr.add_argument("--batch-size", type=int, metavar="N", help="sentences per batch")
    tr.add_argument("--max-len-a", type=float, metavar="A",
                    help="stop after A * source length + B pieces (default from the config)")
    tr.add_argument("--max-len-b", type=int, metavar="B")
    tr.add_argument("--impl", choices=["manual", "fused"],
                    help="decode with this layer implementation (the weights fit both)")
    tr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    tr.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    tr.add_argument("--beam", type=int, default=1, metavar="N",
                    help="beam search with N beams (default 1: greedy search)")
    tr.add_argument("--length-penalty", type=float, default=1.0, metavar="A",
                    help="GNMT length normalization exponent for beam search (0: none)")
    tr.add_argument("--n-best", type=int, default=1, metavar="K",
                    help="write the K best hypotheses of the beam, K lines per input line")
    tr.add_argument("--encoding-errors", choices=["strict", "replace"], default="strict",
                    help="bytes that are not UTF-8: stop with an error, or replace them")
    tr.add_argument("--attention-plot", metavar="DIR",
                    help="also write a PNG heatmap of the attention weights per sentence")
    _add_common(tr)
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
    e.add_argument("--impl", choices=["manual", "fused"])
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    e.add_argument("--beam", type=int, default=1, metavar="N",
                   help="with --checkpoint: beam search with N beams (default 1: greedy)")
    e.add_argument("--length-penalty", type=float, default=1.0, metavar="A",
                   help="GNMT length normalization exponent for beam search")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    _add_common(e)
    e.set_defaults(fn=cmd_evaluate)

    c = sub.add_parser("compare-tf", help="compare teacher-forcing ratios and schedules "
                       "(scripts/compare_teacher_forcing.py)", add_help=False)
    c.add_argument("rest", nargs=argparse.REMAINDER)
    c.set_defaults(fn=cmd_compare_tf, debug=False)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return args.fn(args)
    except UserError as e:
        if args.debug:
            raise
        print(f"seq2seq {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"seq2seq {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
