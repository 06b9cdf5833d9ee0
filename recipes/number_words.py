"""English number words to digits ("three hundred and twelve" -> "312"), or back.

The data is generated here from ``--data-seed`` (see ``toy_tasks.numbers``): numbers from 0
to 999,999 in British English ("one thousand and twelve", "forty-five"), 20,000 for training
(every number below 1,000 and 19,000 of 4 to 6 digits), 500 for validation and 1,000 for
test (4 to 6 digits), no number in two splits. ``--direction digits2words`` turns digits
into words instead. Then the usual path: sentencepiece, training, greedy decoding of the test
split, sacreBLEU and exact match, written to ``OUT/scores.json``. BLEU is 0 for words2digits
(every output is one token: no 2- to 4-grams); read chrF and exact match instead.

    python recipes/number_words.py --out runs/number_words
    python recipes/number_words.py --direction digits2words --out runs/digits2words
"""

import sys
from pathlib import Path

import toy_tasks
from seq2seq import recipe

HERE = Path(__file__).resolve().parent


def build_parser():
    p = recipe.parser(__doc__, HERE / "number_words.yaml", "runs/number_words")
    p.add_argument("--direction", choices=("words2digits", "digits2words"),
                   default="words2digits", help="default: words2digits")
    p.add_argument("--data-seed", type=int, default=1, metavar="N",
                   help="seed of the generated data (default: 1)")
    return p


def main(args) -> None:
    cfg = recipe.load_config(args)
    dataset = toy_tasks.numbers(seed=args.data_seed, direction=args.direction)
    recipe.run(cfg, args.out, dataset=dataset, resume=args.resume,
               progress=not args.no_progress)


if __name__ == "__main__":
    args = build_parser().parse_args()
    sys.exit(recipe.main(main, args))
