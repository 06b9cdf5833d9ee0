"""Sort a list of numbers ("37 5 81 5" -> "5 5 37 81").

The data is generated here from ``--data-seed`` (see ``toy_tasks.sort``): 20,000 training
lists of 2 to 10 integers from 0 to 99 (repeats allowed), 500 for validation and 1,000 for
test, no list in two splits. Then the usual path: sentencepiece, training, greedy decoding of
the test split, sacreBLEU and exact match, written to ``OUT/scores.json``.

    python recipes/sort.py --out runs/sort
"""

import sys
from pathlib import Path

import toy_tasks
from seq2seq import recipe

HERE = Path(__file__).resolve().parent


def build_parser():
    p = recipe.parser(__doc__, HERE / "sort.yaml", "runs/sort")
    p.add_argument("--data-seed", type=int, default=1, metavar="N",
                   help="seed of the generated data (default: 1)")
    return p


def main(args) -> None:
    cfg = recipe.load_config(args)
    dataset = toy_tasks.sort(seed=args.data_seed)
    recipe.run(cfg, args.out, dataset=dataset, resume=args.resume,
               progress=not args.no_progress)


if __name__ == "__main__":
    args = build_parser().parse_args()
    sys.exit(recipe.main(main, args))
