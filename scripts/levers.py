#!/usr/bin/env python
"""What each lever adds to the Multi30k recipe: one run per lever and seed, each lever on its own.

    python scripts/levers.py --data-dir ../shared/data/multi30k --out ../runs/levers
    python scripts/levers.py --data-dir DIR --out OUT --levers baseline fp32 ema --seeds 2 \\
        --minutes 60 --threads 2 --jobs 1              # the recipe's own budget, one at a time
    python scripts/levers.py --data-dir DIR --out OUT --lever lr2=train.lr=0.002   # your own

Each run is ``recipes/multi30k.py --data-dir DIR --out OUT/LEVER/seedN --beam 5`` with the
lever's ``--set`` overrides, ``train.max_minutes=MINUTES`` and ``train.seed=N``, ``--jobs`` of
them at a time with ``THREADS / JOBS`` threads each (default: 2 at a time with one thread, 30
minutes: about the 60-minute recipe's work on one of two cores). A finished run (its
scores.json) is reused, an interrupted one resumed; stop with Ctrl-C and run the same command
again. Two levers need no run of their own: the average of the baseline's last checkpoints
(the recipe keeps 5) and the beam size and length penalty chosen on the validation split for the
baseline's model. A resumed run's wall time and peak memory cover only its last part (levers.csv
says which runs were resumed).

Every choice is made on the validation split; the test sets are scored once per run. Writes
OUT/levers.md (the table), OUT/levers.csv (one row per run) and OUT/levers.png.

Every lever changes the recipe. Three levers of the first study became part of it and were
removed, since on today's recipe they would rerun the baseline: ``bf16`` (``train.amp=bf16``;
the recipe's ``auto`` is bf16 on the CPUs where it pays), ``deeper`` (``model.num_layers=2``)
and ``warmup`` (``train.warmup_steps=1000``, ``train.lr=0.002``). Their reverses, ``fp32``,
``one-layer`` and ``no-warmup``, measure what each adds.
"""

import argparse
import csv
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seq2seq.cli.console import log, run_main  # noqa: E402
from seq2seq.errors import UserError  # noqa: E402

LEVERS: Dict[str, List[str]] = {  # name -> --set overrides of recipes/multi30k.yaml
    "baseline": [],
    # the recipe before the levers study: 1 layer, float32, no warm-up (with --set, each of
    # these overrides reruns the first study on it: see README)
    "first-recipe": ["model.num_layers=1", "train.amp=none", "train.warmup_steps=0",
                     "train.lr=0.001"],
    "fp32": ["train.amp=none"],  # the recipe without bf16
    "one-layer": ["model.num_layers=1"],  # the recipe with 1 encoder and 1 decoder layer
    "no-warmup": ["train.warmup_steps=0", "train.lr=0.001"],  # the recipe's lr, no warm-up
    "ema": ["train.ema_decay=0.999"],  # validate and keep the moving average of the weights
    "wider": ["model.hidden_size=512"],  # 512 per direction and in the decoder
    "tokens": ["train.batch_tokens=2000"],  # ~2,000 target tokens a batch (64 sentences: ~1,000)
    "no-label-smoothing": ["train.label_smoothing=0.0"],  # what the recipe's 0.1 adds
    "tf-inverse-sigmoid": ["teacher_forcing.schedule=inverse_sigmoid",
                           "teacher_forcing.min=0.75"],  # study 2 of the comparison
}
BEAMS, PENALTIES = (5, 10), (0.6, 1.0, 1.4)  # the grid chosen from on validation


class Run(NamedTuple):
    lever: str
    seed: int
    folder: Path
    command: List[str]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, metavar="DIR",
                   help="the raw Multi30k files (train, val, test_2016/2017/2018_flickr .de/.en)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="where the runs go (keep it outside the work tree: a study is resumed "
                        "from it)")
    p.add_argument("--levers", nargs="+", default=list(LEVERS), metavar="NAME",
                   help=f"levers to run, the first the reference (default: all: "
                        f"{', '.join(LEVERS)})")
    p.add_argument("--lever", action="append", default=[], metavar="NAME=KEY=VALUE[,KEY=VALUE]",
                   help="another lever: a name and its --set overrides, e.g. "
                        "lr2=train.lr=0.002 (repeatable; added after --levers)")
    p.add_argument("--seeds", type=int, default=1, metavar="N", help="seeds 1..N (default: 1)")
    p.add_argument("--minutes", type=float, default=30.0,
                   help="train.max_minutes of every run (default: 30)")
    p.add_argument("--threads", type=int, default=2, help="cores to use in all (default: 2)")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (default: 2)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an override for every run (repeatable), e.g. --set train.epochs=40")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def levers_of(args) -> Dict[str, List[str]]:
    chosen = {}
    for name in args.levers:
        if name not in LEVERS:
            raise UserError(f"--levers: unknown lever {name!r} (known: {', '.join(LEVERS)}; "
                            "define one with --lever NAME=KEY=VALUE)")
        chosen[name] = LEVERS[name]
    for text in args.lever:
        name, _, sets = text.partition("=")
        if not name or "=" not in sets:
            raise UserError(f"--lever {text!r}: expected NAME=KEY=VALUE[,KEY=VALUE]")
        chosen[name] = sets.split(",")
    return chosen


def plan(args) -> List[Run]:
    if args.jobs < 1 or args.threads < 1 or args.seeds < 1 or args.minutes <= 0:
        raise UserError("--jobs, --threads, --seeds and --minutes must be positive")
    threads = max(1, args.threads // args.jobs)
    runs = []
    for seed in range(1, args.seeds + 1):
        for lever, sets in levers_of(args).items():
            folder = Path(args.out) / lever / f"seed{seed}"
            cmd = [sys.executable, str(ROOT / "recipes" / "multi30k.py"), "--data-dir",
                   str(Path(args.data_dir).resolve()), "--out", str(folder.resolve()),
                   "--no-progress", "--beam", "5"]
            for s in [f"train.max_minutes={args.minutes:g}", f"train.threads={threads}",
                      f"train.seed={seed}", *args.set, *sets]:
                cmd += ["--set", s]
            runs.append(Run(lever, seed, folder, cmd))
    return runs


def start(run: Run) -> subprocess.Popen:
    """Start a run (resumed where it stopped), its output to OUT/LEVER/seedN.log."""
    run.folder.mkdir(parents=True, exist_ok=True)
    cmd = run.command + (["--resume"] if (run.folder / "last.pt").is_file() else [])
    (run.folder / "command.txt").write_text(shlex.join(run.command) + "\n", encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with open(run.folder.with_suffix(".log"), "a", encoding="utf-8") as out:
        # a session of its own: Ctrl-C reaches this script only, which passes on one SIGTERM
        # (a second signal would make the run stop without saving its checkpoint)
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def check_reusable(run: Run) -> bool:
    """True when the run is finished; an error when its folder holds another command's run."""
    saved = run.folder / "command.txt"
    if saved.is_file() and saved.read_text(encoding="utf-8").strip() != shlex.join(run.command):
        raise UserError(f"{run.folder} holds a run of another command ({saved}): use another "
                        "--out, or delete the folder to run it again")
    return (run.folder / "scores.json").is_file()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_all(runs: Sequence[Run], jobs: int) -> None:
    pending = [r for r in runs if not check_reusable(r)]
    log(f"{len(runs) - len(pending)} of {len(runs)} runs finished already; {len(pending)} to "
        f"go, {jobs} at a time")
    active: Dict[subprocess.Popen, Run] = {}
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        while pending or active:
            while pending and len(active) < jobs:
                r = pending.pop(0)
                log(f"start {r.lever} seed {r.seed}: {r.folder}")
                active[start(r)] = r
            for p, r in list(active.items()):
                if p.poll() is None:
                    continue
                del active[p]
                if p.returncode:
                    raise UserError(f"{r.lever} seed {r.seed} failed (exit {p.returncode}): "
                                    f"see {r.folder.with_suffix('.log')}")
                log(f"done {r.lever} seed {r.seed}")
            time.sleep(1)
    finally:  # stopped, or a run failed: the others save their checkpoints and stop too
        for p in active:
            p.send_signal(signal.SIGTERM)
        for p in active:
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
        signal.signal(signal.SIGTERM, previous)


def choose_beam(folder: Path) -> Dict:
    """Beam size and length penalty chosen on validation for the model in ``folder``, and its
    test scores (cached in ``beam_choice.json``)."""
    cache = folder / "beam_choice.json"
    if cache.is_file():
        return json.loads(cache.read_text(encoding="utf-8"))
    from seq2seq.decoding.evaluate import evaluate_model
    from seq2seq.load import load_for_decoding
    from seq2seq.training.recipe import choose_beam as choose

    model, tok, cfg, device = load_for_decoding(folder)
    search = choose(model, tok, cfg, None, device, False, BEAMS, PENALTIES)
    s = evaluate_model(model, tok, cfg, decode={"beam": search["size"],
                                                "length_penalty": search["length_penalty"]},
                       device=device).scores
    result = {**search, "bleu": s["bleu"], "chrf": s["chrf"]}
    cache.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


def row(run: Run) -> Dict:
    s = json.loads((run.folder / "scores.json").read_text(encoding="utf-8"))
    extra = s.get("extra", {})
    return {"lever": run.lever, "seed": run.seed, "bleu": s["bleu"], "chrf": s["chrf"],
            "bleu_beam5": s.get("beam", {}).get("bleu"),
            "bleu_2017": extra.get("test_2017_flickr", {}).get("bleu"),
            "bleu_2017_beam5": extra.get("test_2017_flickr", {}).get("beam", {}).get("bleu"),
            "bleu_2018": extra.get("test_2018_flickr", {}).get("bleu"),
            "steps": s["steps"], "train_min": s["train_seconds"] / 60,
            "wall_min": s["wall_seconds"] / 60, "peak_gb": s["peak_rss_mb"] / 1024,
            "averaged_bleu": s.get("averaged", {}).get("bleu"), "resumed": s.get("resumed"),
            "signature": s["signature"]}


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.mean(xs) if xs else None


def table(rows: List[Dict], reference: str, beam_rows: List[Dict]) -> str:
    """One line per lever (means over seeds), the difference from ``reference`` with the same
    seeds, and the two levers read off the reference's runs."""
    ref = {r["seed"]: r for r in rows if r["lever"] == reference}
    keys = [("bleu", "BLEU"), ("bleu_beam5", "beam 5"), ("bleu_2017", "2017"),
            ("bleu_2017_beam5", "2017 beam 5"), ("bleu_2018", "2018")]
    head = (["lever", "seeds"] + [t for _, t in keys] + ["Δ BLEU", "Δ beam 5", "Δ 2017",
                                                          "steps", "train min", "wall min",
                                                          "peak GB"])
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    fmt = lambda x, f="{:.2f}": "" if x is None else f.format(x)
    for lever in dict.fromkeys(r["lever"] for r in rows):
        rs = [r for r in rows if r["lever"] == lever]
        diff = lambda k: _mean([r[k] - ref[r["seed"]][k] for r in rs if r["seed"] in ref
                                and r[k] is not None and ref[r["seed"]][k] is not None])
        cells = [lever, str(len(rs))] + [fmt(_mean([r[k] for r in rs])) for k, _ in keys]
        cells += [fmt(diff(k), "{:+.2f}") if lever != reference else "(reference)"
                  for k in ("bleu", "bleu_beam5", "bleu_2017")]
        cells += [fmt(_mean([r["steps"] for r in rs]), "{:.0f}"),
                  fmt(_mean([r["train_min"] for r in rs]), "{:.1f}"),
                  fmt(_mean([r["wall_min"] for r in rs]), "{:.1f}"),
                  fmt(max(r["peak_gb"] for r in rs), "{:.2f}")]
        lines.append("| " + " | ".join(cells) + " |")
    blank = lambda **at: [at.get(h, "") for h in head]
    refs = list(ref.values())
    if refs and refs[0]["averaged_bleu"] is not None:  # the recipe's last-5 average
        avg = _mean([r["averaged_bleu"] for r in refs])
        lines.append("| " + " | ".join(blank(**{
            "lever": f"{reference} + checkpoint average", "seeds": str(len(refs)),
            "BLEU": fmt(avg), "Δ BLEU": fmt(avg - _mean([r["bleu"] for r in refs]), "{:+.2f}")})
        ) + " |")
    if beam_rows:
        b = _mean([r["bleu"] for r in beam_rows])
        pairs = ", ".join(f"beam {r['size']} lp {r['length_penalty']:g}" for r in beam_rows)
        lines.append("| " + " | ".join(blank(**{
            "lever": f"{reference} + beam chosen on validation ({pairs})",
            "seeds": str(len(beam_rows)), "beam 5": fmt(b),
            "Δ beam 5": fmt(b - _mean([r["bleu_beam5"] for r in refs]), "{:+.2f}")})) + " |")
    return "\n".join(lines)


def plot(rows: List[Dict], path: Path) -> None:
    from seq2seq.training.plots import pyplot, save

    plt = pyplot()
    levers = list(dict.fromkeys(r["lever"] for r in rows))
    fig, ax = plt.subplots(figsize=(1.2 * len(levers) + 3, 4))
    for i, (key, label) in enumerate((("bleu", "greedy"), ("bleu_beam5", "beam 5"),
                                      ("bleu_2017", "2017 greedy"))):
        xs = [j + (i - 1) * 0.27 for j in range(len(levers))]
        ys = [_mean([r[key] for r in rows if r["lever"] == lv]) or 0 for lv in levers]
        ax.bar(xs, ys, width=0.27, label=label)
    ax.set_xticks(range(len(levers)))
    ax.set_xticklabels(levers, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("BLEU (test_2016_flickr; 2017: test_2017_flickr)")
    lows = [r[k] for r in rows for k in ("bleu", "bleu_beam5", "bleu_2017") if r[k]]
    if lows:
        ax.set_ylim(max(0, min(lows) - 3), max(lows) + 1.5)
    ax.legend(fontsize=8)
    save(plt, fig, path)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def go():
        runs = plan(args)
        run_all(runs, args.jobs)
        out = Path(args.out)
        rows = [row(r) for r in runs]
        reference = runs[0].lever
        beam_rows = [choose_beam(r.folder) for r in runs if r.lever == reference]
        command = shlex.join(["python", "scripts/levers.py"]
                             + list(argv if argv is not None else sys.argv[1:]))
        md = (f"# Levers of the Multi30k recipe\n\n    {command}\n\n"
              f"{args.minutes:g} minutes of training per run, {max(1, args.threads // args.jobs)}"
              f" thread(s), seeds 1-{args.seeds}; Δ: against {reference} with the same seed. "
              f"sacreBLEU {rows[0]['signature']}.\n\n" + table(rows, reference, beam_rows) + "\n")
        (out / "levers.md").write_text(md, encoding="utf-8")
        with open(out / "levers.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        plot(rows, out / "levers.png")
        print(md)
        print(f"written: {out / 'levers.md'}, {out / 'levers.csv'}, {out / 'levers.png'}")

    return run_main("levers.py", go, args.debug, "run the same command again to resume")


if __name__ == "__main__":
    sys.exit(main())
