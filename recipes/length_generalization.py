"""Generalization beyond the lengths seen in training: reverse sequences longer than any in
the training data.

The data is generated here from ``--data-seed`` (see ``toy_tasks.reverse``): 20,000 training
and 500 validation sequences of 3 to 12 symbols (20 letters), and 1,000 test sequences of 13
to 20 symbols, so every test input is longer than every training input. ``--task copy`` copies
instead of reversing. After the usual path (sentencepiece, training, greedy decoding of the
test split, sacreBLEU, exact match), the tested checkpoint also decodes the validation split,
and the exact match and mean output length per input length, seen (validation) and unseen
(test), are printed and added to ``OUT/scores.json`` (``by_length``, ``valid_exact_match``).

    python recipes/length_generalization.py --out runs/length_generalization
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

import toy_tasks
from seq2seq import recipe
from seq2seq.checkpoint import load_model
from seq2seq.decode import translate
from seq2seq.evaluate import score
from seq2seq.train import pick_device

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


def by_length(srcs, hyps, refs):
    """Per source length (symbols): the number of sentences, the exact match (percent) and the
    mean output length (symbols), as ``{length: {"n", "exact_match", "output_length"}}``."""
    groups = defaultdict(list)
    for s, h, r in zip(srcs, hyps, refs):
        groups[len(s.split())].append((h.strip() == r.strip(), len(h.split())))
    return {n: {"n": len(g), "exact_match": round(100.0 * sum(e for e, _ in g) / len(g), 1),
                "output_length": round(sum(l for _, l in g) / len(g), 1)}
            for n, g in sorted(groups.items())}


def main(args) -> None:
    cfg = recipe.load_config(args)
    dataset = toy_tasks.reverse(seed=args.data_seed, task=args.task,
                                min_len=TRAIN_LENGTHS[0], max_len=TRAIN_LENGTHS[1],
                                test_min_len=TEST_LENGTHS[0], test_max_len=TEST_LENGTHS[1])
    scores = recipe.run(cfg, args.out, dataset=dataset, resume=args.resume,
                        progress=not args.no_progress)
    # The tested checkpoint again, on the validation split: lengths seen in training.
    out = Path(args.out)
    device = pick_device(cfg.train.device)
    model, tok, cfg = load_model(out, device=device)
    valid, test = dataset[cfg.data.valid_split], dataset[cfg.data.test_split]
    valid_hyps = translate(model, tok, valid["src"], cfg.decode.batch_size, cfg.decode.max_len_a,
                           cfg.decode.max_len_b, device=device)
    test_hyps = (out / f"{cfg.data.test_split}.hyp").read_text(encoding="utf-8").splitlines()
    lengths = {**by_length(valid["src"], valid_hyps, valid["tgt"]),
               **by_length(test["src"], test_hyps, test["tgt"])}
    scores["valid_exact_match"] = score(valid_hyps, valid["tgt"])["exact_match"]
    scores["train_lengths"] = list(TRAIN_LENGTHS)
    scores["by_length"] = {str(n): v for n, v in lengths.items()}
    (out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    print(f"exact match: {scores['valid_exact_match']:.1f}% on validation (lengths "
          f"{TRAIN_LENGTHS[0]}-{TRAIN_LENGTHS[1]}, seen in training), {scores['exact_match']:.1f}% "
          f"on test (lengths {TEST_LENGTHS[0]}-{TEST_LENGTHS[1]})")
    print("  length  split       sentences  exact match  mean output length")
    for n, v in lengths.items():
        split = "validation" if n <= TRAIN_LENGTHS[1] else "test"
        print(f"  {n:6d}  {split:10s}  {v['n']:9d}  {v['exact_match']:10.1f}%  "
              f"{v['output_length']:17.1f}")


if __name__ == "__main__":
    args = build_parser().parse_args()
    sys.exit(recipe.main(main, args))
