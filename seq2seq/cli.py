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
  seq2seq train --config my.yaml --out runs/my
  seq2seq train --config my.yaml --set model.cell=gru --set train.max_steps=2000 --out runs/gru
  seq2seq train --config my.yaml --out runs/gru --resume      # continue an interrupted run

Ctrl-C (or SIGTERM) saves a checkpoint at the end of the current step; --resume continues it.
The run folder gets last.pt, best.pt, config.yaml, metrics.jsonl and curves.png."""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


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
    from .data import read_lines, split_lines

    if path is None or path == "-":
        return split_lines(sys.stdin.buffer.read(), "stdin", errors)
    return read_lines(path, errors, what)


def _device(name: str):
    from .train import pick_device

    return pick_device(name)


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


BF16_HELP = ("decode under bfloat16 autocast: about 1.3x faster on CPUs with bf16 instructions "
             "(AVX512-BF16, AMX) and on GPUs, slower on other CPUs; outputs may differ slightly "
             "(Multi30k: BLEU -0.1)")


def cmd_translate(args) -> int:
    import torch

    from .checkpoint import load_model
    from .decode import translate

    if args.length_penalty < 0:
        raise UserError(f"--length-penalty must be >= 0, got {args.length_penalty}")
    if args.beam < 1 or not 1 <= args.n_best <= args.beam:
        raise UserError(f"need --beam >= 1 and 1 <= --n-best <= --beam (got --beam {args.beam}, "
                        f"--n-best {args.n_best})")
    if args.attention_plot and args.beam > 1:
        raise UserError("--attention-plot works with greedy search (--beam 1) only")
    if args.output and not Path(args.output).resolve().parent.is_dir():
        raise UserError(f"cannot write --output {args.output}: its folder does not exist")
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
                       length_penalty=args.length_penalty, n_best=args.n_best,
                       bf16=args.bf16)
    hyps, maps = result if args.attention_plot is not None else (result, None)
    if args.n_best > 1:  # n_best lines per input line
        hyps = [h for n_best in hyps for h in n_best]
    _write_lines(hyps, args.output)
    if maps is not None:
        from .plots import attention_maps

        n = attention_maps(maps, args.attention_plot)
        print(f"wrote {n} attention plot(s) to {args.attention_plot}", file=sys.stderr)
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import format_scores, score

    if args.beam < 1 or args.length_penalty < 0:
        raise UserError(f"need --beam >= 1 and --length-penalty >= 0 (got {args.beam}, "
                        f"{args.length_penalty})")
    if args.hyp or args.ref:
        if not (args.hyp and args.ref):
            raise UserError("evaluate needs both --hyp and --ref (or --checkpoint)")
        hyps = _read_input(args.hyp, args.encoding_errors, "hypothesis file")
        refs = _read_input(args.ref, args.encoding_errors, "reference file")
        if len(hyps) != len(refs):
            raise UserError(f"{args.hyp} has {len(hyps)} lines but {args.ref} has {len(refs)}")
        if not refs:
            raise UserError(f"{args.hyp} and {args.ref} are empty: nothing to score")
    elif args.checkpoint:
        from .checkpoint import load_model
        from .data import load_splits
        from .decode import translate

        device = _device(args.device)
        model, tok, cfg = load_model(args.checkpoint, args.impl, device)
        split = args.split or cfg.data.test_split
        if not split:
            raise UserError("no split to evaluate: give --split or set data.test_split")
        srcs, refs = load_splits(cfg.data, [split], errors=args.encoding_errors)[split]
        hyps = translate(model, tok, srcs, cfg.decode.batch_size, cfg.decode.max_len_a,
                         cfg.decode.max_len_b, device=device, progress=True, beam=args.beam,
                         length_penalty=args.length_penalty, bf16=args.bf16)
        if args.output:
            _write_lines(hyps, args.output)
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


def cmd_average(args) -> int:
    from .checkpoint import average, kept

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
    _add_encoding(t, "plain-text, JSON or CSV data files")
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
    tr.add_argument("--batch-size", type=_count(1), metavar="N",
                    help="sentences per batch (default from the config)")
    tr.add_argument("--max-len-a", type=_nonnegative, metavar="A",
                    help="stop after A * source length + B pieces (default from the config)")
    tr.add_argument("--max-len-b", type=_count(0), metavar="B",
                    help="(default from the config)")
    tr.add_argument("--impl", choices=["manual", "fused"],
                    help="decode with this layer implementation (the weights fit both)")
    tr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    tr.add_argument("--threads", type=_count(0), default=0,
                    help="torch threads (0: default)")
    tr.add_argument("--beam", type=int, default=1, metavar="N",
                    help="beam search with N beams (default 1: greedy search)")
    tr.add_argument("--length-penalty", type=float, default=1.0, metavar="A",
                    help="GNMT length normalization exponent for beam search (0: none)")
    tr.add_argument("--n-best", type=int, default=1, metavar="K",
                    help="write the K best hypotheses of the beam, K lines per input line")
    tr.add_argument("--bf16", action="store_true", help=BF16_HELP)
    _add_encoding(tr, "the input")
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
    e.add_argument("--bf16", action="store_true", help=BF16_HELP)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    _add_encoding(e, "--hyp, --ref or the data")
    _add_common(e)
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
    _add_common(a)
    a.set_defaults(fn=cmd_average)

    c = sub.add_parser("compare-tf", help="compare teacher-forcing ratios and schedules "
                       "(scripts/compare_teacher_forcing.py)", add_help=False)
    c.add_argument("rest", nargs=argparse.REMAINDER)
    c.set_defaults(fn=cmd_compare_tf, debug=False)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if getattr(args, "command", None) == "compare-tf":  # its script parses the rest, --help too
        args.rest = unknown + args.rest
    elif unknown:
        parser.parse_args(argv)  # the usual "unrecognized arguments" error
    if not getattr(args, "fn", None):
        parser.print_help()
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return args.fn(args)
    except BrokenPipeError:  # e.g. `seq2seq translate ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (UserError, OSError) as e:  # OSError: a file we could not read or write
        if args.debug:
            raise
        msg = str(e) if isinstance(e, UserError) else f"{e.strerror or e}" + (
            f": {e.filename}" if getattr(e, "filename", None) else "")
        msg = " ".join(l.strip() for l in msg.splitlines() if l.strip())  # always one line
        print(f"seq2seq {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"seq2seq {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
