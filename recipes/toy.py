"""Toy translation tasks: generate the data, train, decode the test split, score.

    python recipes/toy.py reverse --out runs/reverse       # "a c b" -> "b c a"
    python recipes/toy.py copy --out runs/copy             # "a c b" -> "a c b"
    python recipes/toy.py sort --out runs/sort             # "37 5 81 5" -> "5 5 37 81"
    python recipes/toy.py dates --out runs/dates           # "3rd of March 2021" -> "2021-03-03"
    python recipes/toy.py number_words --out runs/number_words   # "forty-five" -> "45"
    python recipes/toy.py digits2words --out runs/digits2words   # "45" -> "forty-five"
    python recipes/toy.py length_generalization --out runs/length_generalization
    python recipes/toy.py commands --out runs/commands     # "hop twice and look left" ->
                                                           # "I_HOP I_HOP I_TURN_LEFT I_LOOK"
    python recipes/toy.py commands_length --out runs/commands_length   # outputs of <= 22
                                                           # symbols in training, longer in test
    python recipes/toy.py reverse_small --out runs/reverse_small   # reverse, 5-25 symbols,
                                                                   # a 32-unit model
    python recipes/toy.py reverse --set model.cell=gru --out runs/reverse-gru

Each task's data is generated from --data-seed by seq2seq.data.toy (20,000 training, 500
validation and 1,000 test examples, no example in two splits; commands: 16,000 training;
commands_length: the whole grammar, split by output length); its
config is recipes/TASK.yaml (copy: reverse.yaml, digits2words: number_words.yaml), whose
comments describe the task. Then the usual path: sentencepiece, training, greedy decoding of
the test split, sacreBLEU and exact match, written to OUT/scores.json (with the task and the
data seed, toy_task and data_seed: `seq2seq evaluate --checkpoint OUT` generates the data
again from them, and on reverse, copy and sort adds the exact-oracle measures). length_generalization
tests on sequences longer than any seen in training and also reports exact match and output
length per input length.
"""

import json
import sys
from pathlib import Path

from seq2seq.training import recipe

from seq2seq.data import toy
from seq2seq.decoding.evaluate import evaluate_checkpoint

HERE = Path(__file__).resolve().parent


def build_parser():
    p = recipe.parser(__doc__, "recipes/TASK.yaml", "runs/TASK")
    p.add_argument("task", choices=tuple(toy.TASKS), metavar="TASK",
                   help="the toy task: " + ", ".join(toy.TASKS))
    p.add_argument("--data-seed", type=int, default=1, metavar="N",
                   help="seed of the generated data (default: 1)")
    return p


def report_lengths(out: Path, cfg, scores: dict, dataset) -> None:
    """length_generalization: exact match and output length per input length, on validation
    (lengths seen in training) and test (longer ones), printed and added to scores.json."""
    valid = evaluate_checkpoint(out, cfg.data.valid_split, dataset=dataset,
                                device=cfg.train.device)
    test = dataset[scores["split"]]
    test_hyps = (out / f"{scores['split']}.hyp").read_text(encoding="utf-8").splitlines()
    lengths = {**toy.by_length(valid.srcs, valid.hyps, valid.refs),
               **toy.by_length(test["src"], test_hyps, test["tgt"])}
    seen = toy.LENGTH_GENERALIZATION["train"]
    scores["valid_exact_match"] = valid.scores["exact_match"]
    scores["train_lengths"] = list(seen)
    scores["by_length"] = {str(n): v for n, v in lengths.items()}
    (out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    print(f"exact match: {scores['valid_exact_match']:.1f}% on validation (lengths "
          f"{seen[0]}-{seen[1]}, seen in training), {scores['exact_match']:.1f}% on test")
    print("  length  split       sentences  exact match  mean output length")
    for n, v in lengths.items():
        split = "validation" if n <= seen[1] else "test"
        print(f"  {n:6d}  {split:10s}  {v['n']:9d}  {v['exact_match']:10.1f}%  "
              f"{v['output_length']:17.1f}")


def main(task: str, args) -> None:
    cfg = recipe.load_config(args)
    dataset = toy.dataset(task, args.data_seed)
    scores = recipe.run(cfg, args.out, dataset=dataset, resume=args.resume,
                        progress=not args.no_progress, **recipe.decoding(args))
    scores.update(toy_task=task, data_seed=args.data_seed)  # what seq2seq evaluate regenerates
    (Path(args.out) / "scores.json").write_text(json.dumps(scores, indent=2) + "\n",
                                                encoding="utf-8")
    if task == "length_generalization":
        report_lengths(Path(args.out), cfg, scores, dataset)


if __name__ == "__main__":
    args = build_parser().parse_args()
    if args.config == "recipes/TASK.yaml":  # the defaults name the task
        args.config = str(HERE / toy.TASKS[args.task][1])
    if args.out == "runs/TASK":
        args.out = f"runs/{args.task}"
    sys.exit(recipe.main(lambda a: main(a.task, a), args, f"toy.py {args.task}"))
