"""Generalization beyond the lengths seen in training: reverse sequences longer than any in
the training data.

The data is generated here from ``--data-seed`` (see ``toy_tasks.reverse``): 20,000 training
and 500 validation sequences of 3 to 12 symbols (20 letters), and 1,000 test sequences of 13
to 20 symbols, so every test input is longer than every training input. ``--task copy`` copies
instead of reversing. After the usual path (sentencepiece, training, greedy decoding of the
test split, sacreBLEU, exact match), the exact match per test length is printed and added to
``OUT/scores.json`` (``exact_match_by_length``), next to the exact match on the validation
split (``valid_exact_match``, lengths seen in training) of the checkpoint that was tested.

    python recipes/length_generalization.py --out runs/length_generalization
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

import toy_tasks
from seq2seq import recipe

HERE = Path(__file__).resolve().parent
TRAIN_LENGTHS = (3, 12)  # min, max symbols in training and validation
TEST_LENGTHS = (13, 20)  # min, max symbols in test


def build_parser():
    p = recipe.parser(__doc__, HERE / "length_generalization.yaml", "runs/length_generalization")
    p.add_argument("--task", choices=("reverse", "copy"), default="reverse",
                   help="reverse the sequence (default) or copy it unchanged")
    p.add_argument("--data-seed", type=int, default=1, metavar="N",
                   help="seed of the generated data (default: 1)")
    return p


def exact_match_by_length(srcs, hyps, refs):
    """Percent of exact matches per source length (in symbols), as ``{length: percent}``."""
    hits, counts = defaultdict(int), defaultdict(int)
    for s, h, r in zip(srcs, hyps, refs):
        n = len(s.split())
        counts[n] += 1
        hits[n] += h.strip() == r.strip()
    return {n: round(100.0 * hits[n] / counts[n], 1) for n in sorted(counts)}


def main(args) -> None:
    cfg = recipe.load_config(args)
    dataset = toy_tasks.reverse(seed=args.data_seed, task=args.task,
                                min_len=TRAIN_LENGTHS[0], max_len=TRAIN_LENGTHS[1],
                                test_min_len=TEST_LENGTHS[0], test_max_len=TEST_LENGTHS[1])
    scores = recipe.run(cfg, args.out, dataset=dataset, resume=args.resume,
                        progress=not args.no_progress)
    out = Path(args.out)
    test = dataset[cfg.data.test_split]
    hyps = (out / f"{cfg.data.test_split}.hyp").read_text(encoding="utf-8").splitlines()
    by_length = exact_match_by_length(test["src"], hyps, test["tgt"])
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in records if "valid_exact_match" in r]
    # best.pt is the first validation with the highest (BLEU, chrF, -loss), as in train.py
    best = max(scored, key=lambda r: (r["valid_bleu"], r["valid_chrf"], -r["valid_loss"]),
               default=None)
    scores["exact_match_by_length"] = {str(n): v for n, v in by_length.items()}
    scores["train_lengths"] = list(TRAIN_LENGTHS)
    if best is not None:
        scores["valid_exact_match"] = best["valid_exact_match"]
    (out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    seen = f"{TRAIN_LENGTHS[0]}-{TRAIN_LENGTHS[1]}"
    if best is not None:
        print(f"exact match on lengths {seen} (validation, seen in training): "
              f"{best['valid_exact_match']:.1f}%")
    print("exact match on longer test inputs, by length: "
          + "  ".join(f"{n}: {v:.0f}%" for n, v in by_length.items()))


if __name__ == "__main__":
    args = build_parser().parse_args()
    sys.exit(recipe.main(main, args))
