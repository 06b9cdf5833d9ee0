"""Human-written dates to ISO 8601 ("3rd of March 2021", "Mar 3 2021", "03/03/21" -> "2021-03-03").

The data is generated here from ``--data-seed`` (see ``toy_tasks.dates``): dates from 1950 to
2049, each written in one of seven formats (numeric ones day first: 03/04/21 is 3 April 2021;
two-digit years 50-99 are 19xx, 00-49 are 20xx), 20,000 for training, 500 for validation and
1,000 for test, no date in two splits. Then the usual path: sentencepiece, training, greedy
decoding of the test split, sacreBLEU and exact match, written to ``OUT/scores.json``.

    python recipes/dates.py --out runs/dates
"""

import sys
from pathlib import Path

import toy_tasks
from seq2seq import recipe

HERE = Path(__file__).resolve().parent


def build_parser():
    p = recipe.parser(__doc__, HERE / "dates.yaml", "runs/dates")
    p.add_argument("--data-seed", type=int, default=1, metavar="N",
                   help="seed of the generated data (default: 1)")
    return p


def main(args) -> None:
    cfg = recipe.load_config(args)
    dataset = toy_tasks.dates(seed=args.data_seed)
    recipe.run(cfg, args.out, dataset=dataset, resume=args.resume,
               progress=not args.no_progress)


if __name__ == "__main__":
    args = build_parser().parse_args()
    sys.exit(recipe.main(main, args))
