"""The comparison: every setting and seed trained and scored, then the report.

Running the same command again reuses finished runs and resumes an interrupted one.
"""

import dataclasses
import os
import shlex
import signal
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence, Tuple

from seq2seq import config
from seq2seq.cli.console import log, run_main
from seq2seq.data.readers import read_test_set
from seq2seq.errors import UserError

from .options import DEFAULT_CONFIG, DEFAULT_SETTINGS, build_parser
from .report import (
    METRICS,
    aggregate,
    extra_columns,
    hallucination_columns,
    markdown_table,
    plot_by_beam,
    plot_by_length,
    plot_curves,
    plot_positions,
    plot_scores,
    position_rows,
    write_csv,
)
from .forest import plot_forest
from .pooled import (
    compare_sets,
    csv_rows,
    main_table,
    mcnemar_runs,
    report_sections,
    scored_sets,
    summary_columns,
)
from . import injection, oracle, oracle_plots
from .budget import (
    design_text,
    fine_tune_config,
    pretrained_text,
    refuse_untrained_mrt,
    with_budget,
)
from .settings import (
    apply_setting,
    lr_schedule_warning,
    parse_settings,
    run_slug,
    schedule_summary,
)
from .stats import holm, paired_bootstrap


def _default_config() -> str:
    if not DEFAULT_CONFIG.is_file():  # a package installed without its data files
        raise UserError(f"no --config given, and {DEFAULT_CONFIG} (the default) is not here: "
                        "give --config FILE.yaml")
    return str(DEFAULT_CONFIG)


def _shown_path(path: str) -> str:
    """A path relative to the current folder when it is inside it (recipes/commands.yaml)."""
    p = Path(path).resolve()
    return str(p.relative_to(Path.cwd())) if p.is_relative_to(Path.cwd()) else path


def significance(settings, results: Dict[str, List[dict]], run_dirs: Dict[str, List[Path]],
                 refs: List[str]) -> None:
    """Each run's paired bootstrap against the first setting's run with the same seed (test
    outputs read from the run folders), into its result."""
    def hyps(run_dir: Path, split: str) -> List[str]:
        return (run_dir / f"{split}.hyp").read_text(encoding="utf-8").splitlines()

    base = settings[0].label
    for s in settings:
        for r, d, d0 in zip(results[s.label], run_dirs[s.label], run_dirs[base]):
            split = r["eval_split"]
            r.update(paired_bootstrap(hyps(d0, split), hyps(d, split), refs))
    # per seed, the arms compared with the reference are one family: Holm-adjusted p-values
    others = [s.label for s in settings[1:]]
    for j in range(len(results[base])):
        results[base][j]["p_holm"] = 1.0
        adjusted = holm([results[k][j]["p_value"] for k in others])
        for k, p in zip(others, adjusted):
            results[k][j]["p_holm"] = p


def _die_with_parent(parent: int) -> None:
    """In each ``--jobs`` worker: a watcher thread that, when the study's process has died
    (however it died: the worker's parent changes), sends the worker SIGTERM, so that a killed
    study leaves no orphan training into its run folders. A training run saves its checkpoint
    on SIGTERM and stops (the study resumes it); a worker still alive 20 s later (waiting for
    work that will never come) exits."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(20)
        os._exit(128 + int(signal.SIGTERM))

    threading.Thread(target=watch, name="die-with-study", daemon=True).start()


def run_all(jobs: List[Tuple[Any, Path, Optional[Path]]], dataset, scoring, args) -> List[dict]:
    """Train and score every ``(config, run folder, checkpoint to start from or None)``,
    ``args.jobs`` at a time (each process with ``train.threads // jobs`` threads, at least 1);
    results in the order of ``jobs``."""
    from tqdm import tqdm

    from .runs import train_and_evaluate

    n = args.jobs
    bar = tqdm(total=len(jobs), desc="runs", unit="run", disable=args.no_progress,
               dynamic_ncols=True, file=sys.stderr)
    results: List[Optional[dict]] = [None] * len(jobs)

    def report(i: int, r: dict) -> None:
        results[i] = r
        log(f"{jobs[i][1]}: BLEU {r['bleu']:.2f} exact {r['exact_match']:.1f}% loss TF "
            f"{r['valid_loss_tf']:.3f} free {r['valid_loss_free']:.3f} "
            f"({r['train_seconds']:.0f} s, stopped by {r['stopped_by']})")
        bar.update(1)

    with bar:
        if n == 1:
            for i, (run_cfg, d, init) in enumerate(jobs):
                d.mkdir(parents=True, exist_ok=True)
                report(i, train_and_evaluate(run_cfg, d, dataset, scoring,
                                             not args.no_progress, args.fresh, init))
            return results
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
            futures = {}
            for i, (run_cfg, d, init) in enumerate(jobs):
                d.mkdir(parents=True, exist_ok=True)
                threads = max(1, run_cfg.train.threads // n)
                run_cfg = run_cfg.replace(train=dataclasses.replace(run_cfg.train,
                                                                    threads=threads))
                futures[pool.submit(train_and_evaluate, run_cfg, d, dataset, scoring, False,
                                    args.fresh, init)] = i
            try:
                for f in as_completed(futures):
                    report(futures[f], f.result())
            except KeyboardInterrupt:  # the running ones have saved (they got SIGINT too)
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return results


def _command_line(argv: Optional[Sequence[str]]) -> str:
    if argv is None:
        argv = sys.argv[1:]
        argv = argv[argv.index("compare-tf") + 1:] if "compare-tf" in argv else argv
    return "seq2seq compare-tf " + shlex.join(argv)


def run(args, argv: Optional[Sequence[str]] = None) -> str:
    """Run the comparison described by the parsed ``args`` (``argv``: the command's arguments,
    for the report; default: from ``sys.argv``); returns the markdown table."""
    config_path = args.config or _default_config()
    settings = parse_settings(args.settings or DEFAULT_SETTINGS)
    for name, value in (("--seeds", args.seeds), ("--buckets", args.buckets),
                        ("--jobs", args.jobs), ("--beam-sizes", min(args.beam_sizes))):
        if value < 1:
            raise UserError(f"{name} must be >= 1, got {value}")
    if not args.margin >= 0:
        raise UserError(f"--margin must be >= 0, got {args.margin}")
    if args.fine_tune is not None and args.fine_tune < 1:
        raise UserError(f"--fine-tune must be >= 1 (updates per arm), got {args.fine_tune}")
    if args.injection_sentences < 0:
        raise UserError(f"--injection-sentences must be >= 0, got {args.injection_sentences}")
    if args.fine_tune_set and not args.fine_tune:
        raise UserError("--fine-tune-set changes the fine-tuning arms' config: it needs "
                        "--fine-tune STEPS")
    cfg = with_budget(config.load(config_path, args.set), args.budget)
    if lr_schedule_warning(cfg):
        log(lr_schedule_warning(cfg))
    task = oracle.oracle_task(cfg.data.path, config_path, args.toy)  # exact oracle: ExAccErr
    if task and args.injection_sentences:
        raise UserError(f"--injection-sentences probes translation; the {task} task probes "
                        "every output against its exact oracle: drop --injection-sentences")
    seeds = [cfg.train.seed + k for k in range(args.seeds)]
    plan = [(s, seed, apply_setting(cfg, s, seed)) for s in settings for seed in seeds]
    refuse_untrained_mrt(cfg, plan, args.fine_tune)
    if not (cfg.data.test_split or cfg.data.valid_split):
        raise UserError("the config has neither data.test_split nor data.valid_split to score")
    extra = [read_test_set(text) for text in args.extra_test]
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")

    from seq2seq.data.corpus import (
        InMemoryCorpus,  # the slow imports (torch) after the quick checks
    )
    from seq2seq.decoding.evaluate import read_split

    from .runs import Scoring, bucket_label, length_buckets, load_data

    dataset = load_data(cfg, config_path, args.toy, args.data_seed)
    # to count the steps as the loop does, and to check the data before training
    corpus = InMemoryCorpus(cfg, None, dataset, log=log)
    steps_per_epoch, total = corpus.steps_per_epoch(), corpus.total_steps()
    pre_total, arm_cfg = total, cfg
    if args.fine_tune:  # the arms: STEPS updates each, from the seed's pretrained checkpoint
        arm_base = cfg if not args.fine_tune_set else with_budget(
            config.load(config_path, list(args.set) + list(args.fine_tune_set)), args.budget)
        if arm_base is not cfg and lr_schedule_warning(arm_base):
            log(lr_schedule_warning(arm_base))
        arm_cfg = fine_tune_config(arm_base, args.fine_tune, steps_per_epoch)
        if arm_cfg.train.warmup_steps >= args.fine_tune:
            log(f"warning: the arms' learning-rate warm-up (train.warmup_steps="
                f"{arm_cfg.train.warmup_steps}) is not shorter than their {args.fine_tune} "
                "updates: set the arms' own schedule with --fine-tune-set, e.g. "
                "--fine-tune-set train.warmup_steps=0")
        plan = [(s, seed, apply_setting(arm_cfg, s, seed)) for s, seed, _ in plan]
        total = args.fine_tune
    budget = design_text(cfg, args, pre_total, total)
    sched = {s.label: schedule_summary(c.teacher_forcing, steps_per_epoch, total,
                                       arm_cfg.train.epochs) for s, _, c in plan}
    refs = read_split(cfg, cfg.data.test_split or cfg.data.valid_split, dataset)[1]
    buckets = length_buckets([len(r.split()) for r in refs], args.buckets)
    bucket_names = [bucket_label(b) for b in buckets]
    scoring = Scoring(buckets, args.checkpoint, sorted(set(args.beam_sizes)), extra, task, tuple(
        dict.fromkeys(x for x in (cfg.data.valid_split, cfg.data.test_split) if x)),
        args.injection_sentences)
    log(f"comparing {len(settings)} setting(s) x {len(seeds)} seed(s), budget {args.budget} "
        f"({budget}), {args.jobs} at a time, in {out}")

    slug = {s.label: run_slug(s.label) for s in settings}
    run_dirs = {s.label: [out / "runs" / slug[s.label] / f"seed{seed}" for seed in seeds]
                for s in settings}
    pre_dirs = {seed: out / "pretrained" / f"seed{seed}" for seed in seeds}
    pretrained: List[dict] = []
    if args.fine_tune:  # stage 1: one teacher-forced model per seed, scored like the arms
        log(f"stage 1: a teacher-forced model per seed in {out / 'pretrained'}")
        tf = parse_settings(["constant:1.0"])[0]
        pretrained = [dict(r, setting="pretrained", seed=seed) for r, seed in zip(run_all(
            [(apply_setting(cfg, tf, seed), pre_dirs[seed], None) for seed in seeds],
            dataset, scoring, args), seeds)]
        log(f"stage 2: every setting, {args.fine_tune} updates from each seed's "
            f"{args.checkpoint}.pt")
    jobs = [(run_cfg, run_dirs[s.label][seeds.index(seed)],
             pre_dirs[seed] / f"{args.checkpoint}.pt" if args.fine_tune else None)
            for s, seed, run_cfg in plan]
    done = run_all(jobs, dataset, scoring, args)
    results = {s.label: [dict(done[i * len(seeds) + k], setting=s.label, seed=seed)
                         for k, seed in enumerate(seeds)] for i, s in enumerate(settings)}
    significance(settings, results, run_dirs, refs)
    sets = scored_sets(results[settings[0].label][0]["eval_split"], refs, scoring.beam_sizes,
                       scoring.extra)
    mcnemar_runs(settings, results, run_dirs, sets[0])
    pooled = compare_sets(settings, run_dirs, sets, args.margin, results=results)
    compared = {r["slug"] for r in pooled}
    missing = [s.label for s in sets if len(settings) > 1 and s.slug not in compared]
    if missing:  # runs scored before their outputs on every set were kept
        log(f"no pooled comparison on {', '.join(missing)}: some runs lack their outputs there "
            "(--fresh scores them again)")

    rows = [{**row, **summary_columns(pooled, row["setting"], sets[0])}
            for row in aggregate(settings, sched, results, bucket_names)]
    write_csv(out / "results.csv", rows)
    write_csv(out / "runs.csv", [
        {"setting": r["setting"], "seed": r["seed"], **{k: r[k] for k, _, _ in METRICS},
         **{k: r[k] for k in ("bleu_diff", "bleu_diff_lo", "bleu_diff_hi", "p_value",
                              "p_holm", "mcnemar_b", "mcnemar_c", "mcnemar_p",
                              "mcnemar_p_holm")},
         **{f"bleu_len_{b}": r["bleu_by_length"][b] for b in bucket_names},
         **extra_columns(r), **oracle.run_columns(r), **hallucination_columns(r),
         **{k: r[k] for k in ("steps", "epochs", "train_seconds", "stopped_by")}}
        for s in settings for r in results[s.label]])
    if pooled:
        write_csv(out / "comparisons.csv", csv_rows(pooled))
    pos_rows = position_rows(settings, results)
    write_csv(out / "position_accuracy.csv", pos_rows)
    if pretrained:  # stage 1 of --fine-tune: the models every arm started from
        write_csv(out / "pretrained.csv", [
            {"seed": r["seed"], **{k: r[k] for k, _, _ in METRICS}, **extra_columns(r),
             **oracle.run_columns(r), **hallucination_columns(r),
             **{k: r[k] for k in ("steps", "epochs", "train_seconds", "stopped_by")}}
            for r in pretrained])
    title = textwrap.fill(f"{_shown_path(config_path)}, {budget}, {len(seeds)} seed(s)",
                          90)  # the plots' titles: lines that fit the narrowest figure
    plot_scores(rows, out / "scores.png", title)
    plot_by_length(rows, bucket_names, out / "bleu_by_length.png", title)
    plot_curves(settings, run_dirs, sched, out / "training_curves.png", title)
    plot_positions(settings, pos_rows, out / "position_accuracy.png", title)
    ex_rows = oracle.csv_rows(settings, results) if task else []  # compare/oracle.py
    inj_rows = injection.csv_rows(  # toy tasks; translation on request; stage 1 first
        [SimpleNamespace(label="pretrained")] * bool(pretrained) + list(settings),
        {**results, "pretrained": pretrained}, args.injection_sentences)
    if inj_rows:
        write_csv(out / "injection.csv", inj_rows)
        injection.plot(inj_rows, out / "injection.png", title)
    if ex_rows:  # exaccerr.csv, exaccerr.png, exaccerr-SETTING.png
        write_csv(out / "exaccerr.csv", ex_rows)
        oracle_plots.plot_arms(ex_rows, out / "exaccerr.png", title)
        for s in settings:
            oracle_plots.plot(s.label, [r for r in ex_rows if r["setting"] == s.label],
                              out / f"exaccerr-{slug[s.label]}.png", title)
    for s in sets:
        if any(r["slug"] == s.slug for r in pooled):
            plot_forest([r for r in pooled if r["slug"] == s.slug], settings[0].label,
                        out / f"forest-{s.slug}.png", title)
    if len(scoring.beam_sizes) > 1:
        plot_by_beam(rows, scoring.beam_sizes, out / "bleu_by_beam.png", title,
                     [name for name, _, _ in scoring.extra])

    table = main_table(rows, pooled, sets[0], len(seeds))
    full_table = markdown_table(rows, bucket_names, len(seeds))
    text = report_sections(pooled, results, sets[0], settings[0].label, args.margin)
    first = results[settings[0].label][0]
    seeds_text = ("seeds " + ", ".join(map(str, seeds)) + ": mean ± standard deviation"
                  if len(seeds) > 1 else f"seed {seeds[0]}")
    config_text = _shown_path(config_path) + (" with --set " + " --set ".join(args.set)
                                               if args.set else "")
    sched_lines = "\n".join(f"- `{r['setting']}`: {r['schedule']} (ratio "
                            f"{sched[r['setting']]['ratio_start']:.2f} -> "
                            f"{sched[r['setting']]['ratio_end']:.2f}, mean {r['ratio_mean']:.2f})"
                            for r in rows)
    md = f"""# Teacher forcing comparison

    {_command_line(argv)}

- config: {config_text}
- budget ({args.budget}{", fine-tuning" if args.fine_tune else ""}): {budget} ({steps_per_epoch} batches per
  epoch); {seeds_text}
- scores: greedy decoding of the {first['eval_split']} split with each run's {args.checkpoint}.pt;
  sacreBLEU {first['signature']}
- diagnostics: on the {first['diag_split']} split{pretrained_text(pretrained)}

{table}

{text['headline_note']}

{text['sets']}
{injection.section(inj_rows, args.injection_sentences)}
## All columns

{full_table}

Columns: "mean ratio", the teacher-forcing ratio averaged over the training steps; "BLEU 95%
CI", the 95% confidence interval of the mean over seeds (Student's t); "ΔBLEU", the BLEU
difference from the first setting with the same seed, averaged over seeds, with its 95%
confidence interval over seeds ("ΔBLEU 95% CI": an interval without 0 is a difference that holds
across seeds); "p_Holm < 0.05" the seeds in which a paired bootstrap (1,000 resamples of
the test sentences; the interval and the p-value come from the same resamples) finds it
significant after Holm's correction for comparing every setting with the first in the same
seed, by direction, and in brackets without the correction (each run's difference, 95% interval,
p-value and Holm-adjusted p-value are in runs.csv); "loss TF"
and "loss free", the validation loss per token when the decoder is fed the gold previous token
and when it is fed its own argmax; "gap" = loss free - loss TF (exposure bias); "free acc",
token accuracy of free-running greedy decoding over the reference's positions (per position in
position_accuracy.csv); "BLEU len", test BLEU by reference length in words; "steps",
"epochs", "train s" (seconds in training steps) and "stopped by", the budget each run got.

Schedules as resolved for this budget:
{sched_lines}

Plots: forest-SET.png (one per scored set, the headline), scores.png, bleu_by_length.png,
bleu_by_beam.png (BLEU against the beam size, a panel per test set; with --beam-sizes),
training_curves.png, position_accuracy.png (token accuracy by position with gold prefixes,
dashed, and with the model's own, solid: the widening gap is error accumulation).
"BLEU beam K": test BLEU with beam search of K beams; "BLEU NAME" (greedy) and "BLEU NAME beam
K": an --extra-test set.
"""
    (out / "results.md").write_text(md, encoding="utf-8")
    print(table)
    print(f"\nresults in {out / 'results.md'}, {out / 'results.csv'} and plots in {out}")
    return table


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``scripts/compare_teacher_forcing.py``: the same as ``seq2seq compare-tf``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser("compare_teacher_forcing.py").parse_args(argv)
    return run_main("compare_teacher_forcing", lambda: run(args, argv), args.debug,
                    "run the same command again to continue (finished runs are reused)")
