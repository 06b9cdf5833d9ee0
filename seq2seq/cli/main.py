"""The ``seq2seq`` command: train, translate, evaluate, score, average, export, serve,
compare-tf.

Errors a user can fix are printed as one line on stderr with exit status 2 (``--debug``
shows the traceback instead), by :func:`seq2seq.cli.console.run_main` as in every entry point.
The options of a training run (shared with the recipes) are declared once, in
:mod:`seq2seq.cli.run_options`; those of decoding (shared by ``translate`` and ``evaluate``) in
:mod:`seq2seq.cli.decode_options`.
"""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

from seq2seq import __version__
from seq2seq.cli.console import run_main
from seq2seq.errors import UserError

from .decode_options import add_decode_options
from .decode_options import count as _count
from .decode_options import decode_overrides
from .evaluate_options import EPILOG_EVALUATE, add_evaluate_options, check_evaluate
from .evaluate_options import evaluate_overrides
from .run_options import EPILOG_TRAIN, add_debug, add_encoding, add_run_options, add_train_options


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
    from seq2seq.data.readers import read_lines, split_lines

    if path is None or path == "-":
        return split_lines(sys.stdin.buffer.read(), "stdin", errors)
    return read_lines(path, errors, what)


def cmd_train(args) -> int:
    from seq2seq import config

    cfg = config.load(args.config, args.set)  # config errors come before the slow imports
    from seq2seq.training.loop import train

    if args.device:
        import dataclasses

        cfg = cfg.replace(train=dataclasses.replace(cfg.train, device=args.device))
    summary = train(cfg, args.out, resume=args.resume, overwrite=args.overwrite,
                    progress=not args.no_progress, encoding_errors=args.encoding_errors,
                    init_from=args.init_from)
    best = summary["best"]
    if "valid_bleu" in best:
        print(f"best validation BLEU {best['valid_bleu']:.2f} at step {best['step']} "
              f"(greedy, sacreBLEU {__import__('sacrebleu').__version__}); "
              f"checkpoints in {args.out}")
    return 128 + summary["signal"] if summary["interrupted"] else 0  # 130 SIGINT, 143 SIGTERM


def cmd_translate(args) -> int:
    from seq2seq.decoding.ensemble import Ensemble
    from seq2seq.decoding.evaluate import decode_config
    from seq2seq.decoding.search import translate
    from seq2seq.kernels.device import set_threads
    from seq2seq.load import load_for_decoding

    if args.output and not Path(args.output).resolve().parent.is_dir():
        raise UserError(f"cannot write --output {args.output}: its folder does not exist")
    set_threads(args.threads)
    model, tok, cfg, device = load_for_decoding(args.checkpoint, impl=args.impl,
                                                device=args.device)
    opts = decode_config(cfg, decode_overrides(args), model)
    if args.attention_plot and (opts.beam > 1 or opts.n_best > 1):
        raise UserError("--attention-plot works with one output per line (--beam 1, --n-best 1)")
    if opts.coverage_penalty and not Ensemble.of(model).has_attention:
        raise UserError("--coverage-penalty needs a model with attention (model.attention)")
    lines = _read_input(args.input, args.encoding_errors)
    prefixes = None
    if args.prefix_file:
        prefixes = _read_input(args.prefix_file, args.encoding_errors, "prefix file")
        if len(prefixes) != len(lines):
            raise UserError(f"--prefix-file {args.prefix_file} has {len(prefixes)} lines but "
                            f"the input has {len(lines)}: one prefix (maybe empty) per line")
    result = translate(model, tok, lines, opts, device=device, progress=args.output is not None,
                       return_attention=args.attention_plot is not None, prefixes=prefixes,
                       log_probs=args.scores)
    hyps, scores = result.hyps, result.log_probs
    if opts.n_best > 1:  # n_best lines per input line
        hyps = [h for n_best in hyps for h in n_best]
        scores = scores and [s for n_best in scores for s in n_best]
    if scores is not None:  # TSV: output, log-probability (empty for a line not decoded)
        hyps = [h.replace("\t", " ") + "\t" + ("" if s is None else f"{s:.4f}")
                for h, s in zip(hyps, scores)]
    _write_lines(hyps, args.output)
    if result.attention is not None:
        from seq2seq.training.plots import attention_maps

        n = attention_maps(result.attention, args.attention_plot)
        print(f"wrote {n} attention plot(s) to {args.attention_plot}", file=sys.stderr)
    return 0


def cmd_score(args) -> int:
    from seq2seq.decoding.scoring import corpus_figures, score_pairs
    from seq2seq.kernels.device import set_threads
    from seq2seq.load import load_for_decoding

    srcs = _read_input(args.src, args.encoding_errors, "source file")
    tgts = _read_input(args.tgt, args.encoding_errors, "target file")
    if len(srcs) != len(tgts):
        raise UserError(f"--src {args.src} has {len(srcs)} lines but --tgt {args.tgt} has "
                        f"{len(tgts)}: score needs one target per source")
    if not srcs:
        raise UserError(f"--src {args.src} is empty: nothing to score")
    for name, lines in (("--src", srcs), ("--tgt", tgts)):
        empty = [i + 1 for i, l in enumerate(lines) if not l.strip()]
        if empty:
            raise UserError(f"{name} line {empty[0]} is empty ({len(empty)} empty line(s) in "
                            "all): score needs a sentence on both sides of every pair")
    set_threads(args.threads)
    model, tok, cfg, device = load_for_decoding(args.checkpoint, impl=args.impl,
                                                device=args.device, exported=False)
    pairs = score_pairs(model, tok, srcs, tgts, args.batch_size or cfg.decode.batch_size,
                        device, args.free_running, progress=sys.stderr.isatty())
    corpus = corpus_figures(pairs)
    mode = "free-running" if args.free_running else "teacher-forced"
    if args.json:
        print(json.dumps({"mode": mode, **corpus, "sentences": [
            {"log_prob": p.log_prob, "per_token": p.per_token, "tokens": p.tokens}
            for p in pairs]}))
    else:
        _write_lines([f"{p.log_prob:.4f}\t{p.per_token:.4f}\t{p.tokens}" for p in pairs], None)
        print(f"{corpus['pairs']} pairs, {corpus['tokens']} target tokens (EOS included), "
              f"{mode}: log-probability {corpus['log_prob']:.2f}, per token "
              f"{corpus['per_token']:.4f}, perplexity {corpus['ppl']:.2f}", file=sys.stderr)
    return 0


def cmd_evaluate(args) -> int:
    from seq2seq.decoding import hallucination as hl
    from seq2seq.decoding.evaluate import evaluate_model, evaluate_sets, format_scores, score
    from seq2seq.decoding.evaluate import read_test_sets

    check_evaluate(args)
    lines = []  # what the text output adds below the scores
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
    elif args.checkpoint and args.beam_sizes:
        from seq2seq.decoding import beam_sweep as bs

        sets = bs.sweep_checkpoint(args.checkpoint, args.split, args.beam_sizes,
                                   args.length_penalty, evaluate_overrides(args), args.impl,
                                   args.device, True, args.encoding_errors,
                                   read_test_sets(args.extra_test))
        if args.plot:
            bs.plot_sweep(sets, args.plot, f"beam sweep: {args.checkpoint[0]}")
        print(json.dumps(bs.sweep_json(sets), indent=2) if args.json else bs.format_sets(sets))
        return 0
    elif args.checkpoint:
        from seq2seq.compare import toy_evaluation as te
        from seq2seq.load import load_for_decoding

        extra = read_test_sets(args.extra_test)  # before the slow load
        model, tok, cfg, device = load_for_decoding(args.checkpoint, impl=args.impl,
                                                    device=args.device)
        toy = te.toy_data(cfg, args.checkpoint[0], args.toy, args.data_seed)  # None: real data
        if args.plot and not (toy and te.measurable(model, toy)):
            raise UserError("--plot draws the beam sweep (give --beam-sizes too) or the ExAccErr "
                            "curve of a toy run with an exact oracle (reverse, copy, sort, ...)")
        ev = evaluate_model(model, tok, cfg, args.split, toy and toy.dataset,
                            evaluate_overrides(args), device, True, args.encoding_errors, True)
        oracle = te.oracle_keys(model, tok, cfg, ev.split, toy, device) if toy else {}
        if args.plot:
            te.plot_oracle(oracle, cfg.train.seed, args.plot, f"{args.checkpoint[0]}")
        if args.output:
            _write_lines(ev.hyps, args.output)
        report = hl.evaluation_report(ev)
        if args.hallucination_examples:
            _write_lines(hl.format_examples(report, ev.srcs, ev.refs, ev.hyps, ev.per_token)
                         .splitlines(), args.hallucination_examples)
        s, lines = {**ev.scores, **report, **oracle}, [hl.format_report(report)]
        lines += [te.format_oracle(oracle)] if oracle else []
        if extra:  # scored like the split, each under its name
            s["extra"] = evaluate_sets(model, tok, cfg, extra, evaluate_overrides(args), device)
            lines += [f"{n}: {format_scores(x)}\n{hl.format_report(x)}"
                      for n, x in s["extra"].items()]
    else:
        raise UserError("evaluate needs --checkpoint, or --hyp and --ref")
    print(json.dumps(s, indent=2) if args.json else "\n".join([format_scores(s)] + lines))
    return 0


def cmd_average(args) -> int:
    from seq2seq.training.checkpoint import average
    from seq2seq.training.run_folder import kept

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
    from seq2seq.compare.study import run

    run(args)
    return 0


EPILOG_TRANSLATE = """examples:
  echo "a c e g" | seq2seq translate --checkpoint runs/reverse
  seq2seq translate --checkpoint runs/my --input test.de --output test.hyp --beam 5
  seq2seq translate --checkpoint runs/my --beam 5 --n-best 3 < test.de   # 3 lines per input
  seq2seq translate --checkpoint runs/a runs/b runs/c --beam 5 < test.de  # an ensemble
  seq2seq translate --checkpoint runs/my --sample --top-p 0.9 --n-best 4 --seed 7 < mono.de
  seq2seq translate --checkpoint runs/my --prefix-file starts.en < test.de  # forced prefixes
  seq2seq translate --checkpoint runs/my --beam 5 --no-repeat-ngram 3 --coverage-penalty 0.2
  seq2seq translate --checkpoint runs/my --scores < test.de   # TSV: output, log-probability

Decoding options not given come from the checkpoint's config (its decode section).
--checkpoint may also be a folder written by 'seq2seq export': ONNX Runtime decodes then, on
the CPU, with the same options and output (not --impl, --bf16 or --device cuda)."""

EPILOG_SCORE = """examples:
  seq2seq score --checkpoint runs/my --src test.de --tgt test.en        # one line per pair
  seq2seq score --checkpoint runs/my --src test.de --tgt test.en --json
  seq2seq score --checkpoint runs/my --src test.de --tgt test.en --free-running

Each line: the log-probability of the target (natural log, its pieces and EOS), its average
per token, and the number of tokens; the corpus figures (perplexity) go to stderr, or into the
--json object. --free-running feeds the decoder its own greedy predictions instead of the
target (as many steps as the target has): the gap to the teacher-forced figures is the
sentence's exposure bias."""


def build_parser() -> argparse.ArgumentParser:
    from seq2seq.compare.options import add_arguments as add_compare_arguments

    from .convert import add_convert_command
    from .deploy_options import add_deploy_commands

    p = argparse.ArgumentParser(
        prog="seq2seq",
        description="RNN (LSTM/GRU) encoder-decoder translation: train on parallel text, "
                    "translate with greedy or beam search or sampling, score with sacreBLEU or "
                    "the model's own log-probability, compare teacher-forcing schedules, "
                    "export to ONNX Runtime (float32, int8) and serve translations over HTTP.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="run 'seq2seq COMMAND --help' for the options of each command")
    p.add_argument("--version", action="version", version=f"seq2seq {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a model from a YAML config",
                       description="Train a model: data -> sentencepiece -> bucketed batches -> "
                                   "Adam, validating with greedy BLEU.",
                       epilog=EPILOG_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(t)
    add_train_options(t)
    t.set_defaults(fn=cmd_train)

    tr = sub.add_parser("translate", help="translate text with a trained model (greedy, beam, "
                        "sampling; ensembles)",
                        description="Greedy or beam search, or sampling, with one model or an "
                                    "ensemble; one output line per input line (K with --n-best "
                                    "K), in order; an empty input line gives an empty output "
                                    "line (its prefix, with --prefix-file).",
                        epilog=EPILOG_TRANSLATE,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("--checkpoint", required=True, nargs="+", metavar="DIR_OR_FILE",
                    help="a run folder (uses best.pt, else last.pt), a .pt file, or a folder "
                         "written by 'seq2seq export' (ONNX Runtime); several checkpoints: an "
                         "ensemble that averages the models' log-probabilities at every step "
                         "(same vocabulary needed; decode options from the first)")
    tr.add_argument("--input", metavar="FILE", help="input text, one sentence per line "
                    "(default: stdin)")
    tr.add_argument("--output", metavar="FILE", help="where to write (default: stdout)")
    add_decode_options(tr)
    tr.add_argument("--prefix-file", metavar="FILE",
                    help="one target prefix per input line (may be empty): each output starts "
                         "with its prefix and continues from it")
    tr.add_argument("--scores", action="store_true",
                    help="write each output's log-probability beside it (TSV: output, tab, "
                         "natural-log probability of its pieces and EOS under the model)")
    tr.add_argument("--threads", type=_count(0), default=0, help="torch threads (0: default)")
    add_encoding(tr, "the input and the prefix file")
    tr.add_argument("--attention-plot", metavar="DIR",
                    help="also write a PNG heatmap of the attention weights per sentence")
    add_debug(tr)
    tr.set_defaults(fn=cmd_translate)

    e = sub.add_parser("evaluate", help="score translations with sacreBLEU BLEU, chrF and "
                       "exact match",
                       description="Score --hyp against --ref, or decode a split of the "
                                   "checkpoint's data and score it.",
                       epilog=EPILOG_EVALUATE, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("--checkpoint", nargs="+", metavar="DIR_OR_FILE",
                   help="decode and score this model (a run folder, a .pt file, or an exported "
                        "folder; several checkpoints: an ensemble)")
    e.add_argument("--split", help="split to decode (default: data.test_split)")
    e.add_argument("--hyp", metavar="FILE", help="hypotheses, one per line")
    e.add_argument("--ref", metavar="FILE", help="references, one per line")
    e.add_argument("--output", metavar="FILE", help="with --checkpoint: save the hypotheses")
    add_decode_options(e, n_best=False, length_penalties=True)
    add_evaluate_options(e)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    add_encoding(e, "--hyp, --ref or the data")
    add_debug(e)
    e.set_defaults(fn=cmd_evaluate)

    sc = sub.add_parser("score", help="the model's log-probability of given translations "
                        "(forced decoding)",
                        description="Forced decoding: the log-probability the model gives each "
                                    "target (one line per pair), and the corpus perplexity.",
                        epilog=EPILOG_SCORE, formatter_class=argparse.RawDescriptionHelpFormatter)
    sc.add_argument("--checkpoint", required=True, nargs="+", metavar="DIR_OR_FILE",
                    help="a run folder or a .pt file (several: an ensemble)")
    sc.add_argument("--src", required=True, metavar="FILE", help="sources, one per line")
    sc.add_argument("--tgt", required=True, metavar="FILE", help="targets, one per line")
    sc.add_argument("--free-running", action="store_true",
                    help="feed the decoder its own greedy predictions, not the target")
    sc.add_argument("--json", action="store_true", help="print one JSON object")
    sc.add_argument("--impl", choices=["manual", "fused"], help="the layer implementation")
    sc.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    sc.add_argument("--batch-size", type=_count(1), metavar="N",
                    help="pairs per batch (default: decode.batch_size of the config)")
    sc.add_argument("--threads", type=_count(0), default=0, help="torch threads (0: default)")
    add_encoding(sc, "--src and --tgt")
    add_debug(sc)
    sc.set_defaults(fn=cmd_score)

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

    add_deploy_commands(sub)
    add_convert_command(sub)
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
