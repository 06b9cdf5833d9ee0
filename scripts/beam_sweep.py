#!/usr/bin/env python
"""The beam sweep over every run of a ``seq2seq compare-tf`` study: what a large beam does to
each arm, in domain and out of it.

    python scripts/beam_sweep.py runs/m30k-study --settings constant-1.0 mrt pretrained \\
        --beam-sizes 1 2 5 10 20 50 --length-penalty 0 1.0 \\
        --extra-test coco=test_2017_mscoco.de,test_2017_mscoco.en --threads 1
    python scripts/beam_sweep.py runs/m30k-study --settings mrt --seeds 1 2 --limit 200  # quick

Each SETTING is a folder name of OUT/runs (compare-tf's slug: ``constant:1.0`` is
``constant-1.0``; the label is accepted too), or ``pretrained`` (OUT/pretrained, stage 1 of
``--fine-tune``). For each setting and seed (default: every seedN folder there), the run's
checkpoint (default: the one the study scored, its result.json's; else best.pt) decodes the
split (default: the config's test split) and each --extra-test set once per (beam size, length
penalty), as ``seq2seq evaluate --beam-sizes`` does (the same library functions): BLEU, chrF,
the length ratio, the shares of empty outputs and of outputs cut short by the output limit, the
hallucination rate (exact on the aligned toy tasks, else its proxy). Greedy search (beam 1)
argmaxes, whatever the config says about sampling. Wang and Sennrich (2020) report that minimum
risk training shrinks the loss of quality at large beams and the hallucinations under domain
shift; this table and plot show whether the study's arms do.

A run without result.json (still training, or stopped) is skipped and named in the outputs.
Each (setting, seed, set) result is kept in OUT/beam-sweep/cache/, keyed on the checkpoint
(path, size, modification time), the beam sizes, the penalties, the set (an extra set's name
and a hash of its lines) and --limit: run the same command again to resume, or after more runs
finish to add them; only what changed is decoded again.

Writes OUT/beam-sweep/beam_sweep.csv (one row per setting, seed, set, beam, penalty),
beam_sweep.md (the mean over seeds, with BLEU's min-max over seeds) and beam_sweep.png (one
column of panels per set; BLEU above, the length ratio below; one colour per setting, one line
style per penalty; the mean over seeds, a band from the min to the max). --limit N scores the
first N sentences of each set only (a quicker, noisier sweep; the outputs say so).
"""

import argparse
import csv
import hashlib
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seq2seq.cli.console import log, run_main  # noqa: E402
from seq2seq.cli.decode_options import count  # noqa: E402
from seq2seq.data.readers import add_extra_test_option  # noqa: E402
from seq2seq.errors import UserError  # noqa: E402

#: the measures of a sweep's row, in the csv's order; the hallucination key is added per set
MEASURES = ("bleu", "chrf", "length_ratio", "empty_pct", "truncated_pct")
#: the md table's columns after BLEU and its range: (key, heading, format)
MD_COLUMNS = (("chrf", "chrF", "{:.2f}"),
              ("length_ratio", "length ratio", "{:.3f}"), ("empty_pct", "empty %", "{:.1f}"),
              ("truncated_pct", "cut short %", "{:.1f}"))
CACHE_VERSION = 1


class Run(NamedTuple):
    """One finished run of the study and the checkpoint swept."""

    setting: str  # the folder name under OUT/runs, or "pretrained"
    seed: int
    checkpoint: Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="beam_sweep.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", metavar="OUT", help="a compare-tf output folder (its --out)")
    p.add_argument("--settings", nargs="+", required=True, metavar="SETTING",
                   help="folder names of OUT/runs (or compare-tf labels), and 'pretrained' for "
                        "OUT/pretrained. Example: --settings constant-1.0 mrt")
    p.add_argument("--seeds", type=int, nargs="+", metavar="N",
                   help="the seeds to sweep (default: every seedN folder of each setting)")
    p.add_argument("--checkpoint", choices=("best", "last"),
                   help="which checkpoint of each run (default: the one compare-tf scored, "
                        "from its result.json)")
    p.add_argument("--beam-sizes", type=count(1), nargs="+", default=[1, 2, 5, 10, 20, 50],
                   metavar="K", help="beam sizes (1: greedy; default: 1 2 5 10 20 50)")
    p.add_argument("--length-penalty", type=float, nargs="+", default=[0.0, 1.0], metavar="A",
                   help="length penalties (0: none; default: 0 1.0)")
    add_extra_test_option(p, "swept like the split and plotted beside it")
    p.add_argument("--split", help="the split of the runs' data to sweep (default: the config's "
                                   "test split, else its validation split)")
    p.add_argument("--threads", type=count(0), default=1,
                   help="torch threads (default: 1; 0: torch's default)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--limit", type=count(1), metavar="N",
                   help="score only the first N sentences of each set (a quicker sweep)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="a traceback instead of one line")
    return p


def slug(setting: str) -> str:
    """compare-tf's folder name of a setting's label (``constant:1.0`` -> ``constant-1.0``)."""
    from seq2seq.compare.settings import run_slug

    return run_slug(setting)


def plan(out: Path, settings: Sequence[str], seeds: Optional[Sequence[int]],
         checkpoint: Optional[str]) -> Tuple[List[Run], List[str]]:
    """The finished runs to sweep, and the run folders skipped (with why)."""
    runs, skipped = [], []
    for setting in dict.fromkeys(map(slug, settings)):
        base = out / "pretrained" if setting == "pretrained" else out / "runs" / setting
        if not base.is_dir():
            there = sorted(d.name for d in (out / "runs").glob("*") if d.is_dir())
            raise UserError(f"{base} is not there: settings in {out / 'runs'}: "
                            + (", ".join(there + ["pretrained"]) if there else "none"))
        found = sorted(int(d.name[4:]) for d in base.glob("seed*") if d.name[4:].isdigit())
        for seed in seeds or found:
            folder = base / f"seed{seed}"
            result = folder / "result.json"
            if not result.is_file():
                skipped.append(f"{folder} (no result.json: still training, stopped, or absent)")
                continue
            which = checkpoint or json.loads(result.read_text(encoding="utf-8")).get(
                "checkpoint", "best")
            if not (folder / f"{which}.pt").is_file():
                skipped.append(f"{folder} (no {which}.pt)")
                continue
            runs.append(Run(setting, seed, folder / f"{which}.pt"))
    if not runs:
        raise UserError("no finished run to sweep" + (": skipped " + "; ".join(skipped)
                                                       if skipped else ""))
    return runs, skipped


def lines_hash(srcs: Sequence[str], refs: Sequence[str]) -> str:
    return hashlib.sha256(("\n".join(srcs) + "\0" + "\n".join(refs)).encode()).hexdigest()[:16]


def cache_key(run: Run, set_id: str, args) -> Dict[str, Any]:
    """What a cached result must match to be reused."""
    st = run.checkpoint.stat()
    return {"version": CACHE_VERSION, "checkpoint": str(run.checkpoint.resolve()),
            "size": st.st_size, "mtime_ns": st.st_mtime_ns, "set": set_id,
            "beam_sizes": sorted(set(args.beam_sizes)),
            "length_penalties": list(dict.fromkeys(args.length_penalty)), "limit": args.limit}


def cache_path(out: Path, run: Run, set_id: str) -> Path:
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in set_id.split("@")[0])
    return out / "beam-sweep" / "cache" / run.setting / f"seed{run.seed}" / f"{name}.json"


def cached(path: Path, key: Dict[str, Any]) -> Optional[dict]:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if found.get("key") == key else None


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def sweep_runs(runs: Sequence[Run], extra, args) -> List[dict]:
    """Every run's sweep of the split and of each extra set (cached ones read back); one row
    per (run, set, beam, penalty) with ``setting``, ``seed`` and ``set``."""
    from tqdm import tqdm

    from seq2seq.decoding import beam_sweep as bs
    from seq2seq.decoding.evaluate import read_split

    out, limit = Path(args.out), args.limit
    sets = [("split" + (f"={args.split}" if args.split else ""), None)] + [
        (f"extra-{name}@{lines_hash(srcs, refs)}", (name, srcs[:limit], refs[:limit]))
        for name, srcs, refs in extra]
    todo, results = [], {}
    for run in runs:
        for set_id, _ in sets:
            key = cache_key(run, set_id, args)
            found = cached(cache_path(out, run, set_id), key)
            if found:
                results[run, set_id] = found
            else:
                todo.append((run, set_id, key))
    log(f"{len(runs) * len(sets) - len(todo)} of {len(runs) * len(sets)} (run, set) sweeps "
        f"are cached in {out / 'beam-sweep' / 'cache'}; {len(todo)} to decode")
    per = bs.decodings(args.beam_sizes, args.length_penalty)
    bar = tqdm(total=len(todo) * per, desc="beam sweep", unit="decoding", file=sys.stderr,
               disable=args.no_progress, dynamic_ncols=True)
    with bar:
        for run in runs:
            mine = [(set_id, key) for r, set_id, key in todo if r == run]
            if not mine:
                continue
            model, tok, cfg, device = load_for(run, args)
            for set_id, key in mine:
                data = dict(sets)[set_id]
                if data is None:  # the split, from the run's own config
                    name = args.split or cfg.data.test_split or cfg.data.valid_split
                    srcs, refs = read_split(cfg, name)
                    data = (name, srcs[:limit], refs[:limit])
                name, srcs, refs = data
                bar.set_postfix_str(f"{run.setting} seed{run.seed} {name}")
                rows = bs.sweep(model, tok, cfg, srcs, refs, name, args.beam_sizes,
                                args.length_penalty, {"sample": False}, device,
                                done=lambda: bar.update(1))
                results[run, set_id] = {"key": key, "set": name, "rows": rows}
                write_atomic(cache_path(out, run, set_id), json.dumps(results[run, set_id],
                                                                      indent=1) + "\n")
    return [{"setting": run.setting, "seed": run.seed, "set": results[run, set_id]["set"], **r}
            for run in runs for set_id, _ in sets for r in results[run, set_id]["rows"]]


def load_for(run: Run, args):
    from seq2seq.load import load_for_decoding

    return load_for_decoding(str(run.checkpoint), device=args.device)


def hallucination_keys(rows: Sequence[dict]) -> List[str]:
    return list(dict.fromkeys(k for r in rows for k in r if k.startswith("hallucination")))


def summarize(rows: Sequence[dict]) -> List[dict]:
    """The mean over seeds of each measure per (set, setting, beam, penalty), with ``KEY_min``
    and ``KEY_max`` (over seeds) and ``seeds``; in the rows' order."""
    groups: Dict[tuple, List[dict]] = {}
    for r in rows:
        groups.setdefault((r["set"], r["setting"], r["beam"], r["length_penalty"]), []).append(r)
    keys = list(MEASURES) + hallucination_keys(rows)
    out = []
    for (name, setting, beam, a), rs in groups.items():
        s = {"set": name, "setting": setting, "beam": beam, "length_penalty": a,
             "seeds": len(rs), "n": rs[0]["n"]}
        for k in keys:
            xs = [r[k] for r in rs if r.get(k) is not None]
            if xs:
                s.update({k: statistics.fmean(xs), f"{k}_min": min(xs), f"{k}_max": max(xs)})
        out.append(s)
    return out


def md_table(summary: Sequence[dict]) -> str:
    """One markdown table per set: the mean over seeds per setting, beam and penalty."""
    blocks = []
    for name in dict.fromkeys(s["set"] for s in summary):
        mine = [s for s in summary if s["set"] == name]
        hkeys = [k for k in hallucination_keys(mine) if not k.endswith(("_min", "_max"))]
        cols = list(MD_COLUMNS) + [(k, "hallucination proxy %" if "proxy" in k
                                    else "hallucination %", "{:.1f}") for k in hkeys]
        head = ["setting", "beam", "length penalty", "seeds", "BLEU", "BLEU min–max",
                *(h for _, h, _ in cols)]
        lines = [f"### {name} ({mine[0]['n']} sentences)", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s in mine:
            cells = [s["setting"], str(s["beam"]), f"{s['length_penalty']:g}", str(s["seeds"]),
                     f"{s['bleu']:.2f}", f"{s['bleu_min']:.2f}–{s['bleu_max']:.2f}"]
            cells += [f.format(s[k]) if k in s else "" for k, _, f in cols]
            lines.append("| " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def write_csv(path: Path, rows: Sequence[dict]) -> None:
    fields = ["setting", "seed", "set", "beam", "length_penalty", *MEASURES,
              *hallucination_keys(rows), "n"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def go():
        import shlex

        from seq2seq.decoding.beam_sweep import plot_sweep
        from seq2seq.decoding.evaluate import read_test_sets
        from seq2seq.kernels.device import set_threads

        out = Path(args.out)
        if not out.is_dir():
            raise UserError(f"{out} is not a folder (give a compare-tf --out)")
        extra = read_test_sets(args.extra_test)
        splits = {"split", "test", "validation", "valid", "train", args.split}
        for name in (name for name, _, _ in extra if name in splits):
            raise UserError(f"--extra-test {name}=...: the name of a split; call it something "
                            "else (each set is one column of the csv's 'set')")
        runs, skipped = plan(out, args.settings, args.seeds, args.checkpoint)
        set_threads(args.threads)
        rows = sweep_runs(runs, extra, args)
        summary = summarize(rows)
        folder = out / "beam-sweep"
        write_csv(folder / "beam_sweep.csv", rows)
        limited = (f"Scored on the first {args.limit} sentences of each set only (--limit "
                   f"{args.limit}): a quick sweep, not the full sets.\n\n" if args.limit else "")
        command = shlex.join(["python", "scripts/beam_sweep.py"]
                             + list(argv if argv is not None else sys.argv[1:]))
        md = (f"# Beam sweep of {out}\n\n    {command}\n\n{limited}"
              f"{len(runs)} run(s): " + ", ".join(f"{r.setting}/seed{r.seed} ({r.checkpoint.name})"
                                                   for r in runs)
              + ". Each cell is the mean over the seeds; BLEU min–max is its range over them. "
              "Beam 1 is greedy search (no length penalty: one decoding, its row repeated).\n"
              + ("\nNot swept: " + "; ".join(skipped) + ".\n" if skipped else "")
              + "\n" + md_table(summary) + "\n")
        (folder / "beam_sweep.md").write_text(md, encoding="utf-8")
        sets = {name: [s for s in summary if s["set"] == name]
                for name in dict.fromkeys(s["set"] for s in summary)}
        plot_sweep(sets, str(folder / "beam_sweep.png"),
                   f"beam sweep of {out.name}: mean over seeds, band min-max"
                   + (f" (first {args.limit} sentences of each set)" if args.limit else ""))
        print(md)
        print(f"written: {folder / 'beam_sweep.csv'}, {folder / 'beam_sweep.md'}, "
              f"{folder / 'beam_sweep.png'}")

    return run_main("beam_sweep.py", go, args.debug, "run the same command again to resume")


if __name__ == "__main__":
    sys.exit(main())
