"""The package's shape: a tree that is its map (DEVELOPERS.md lists it; each concept in its
folder; few entries at the top), a model that imports none of the edges, no import cycle, no
module-level switch flipped from outside, and files a reader can take in."""

import ast
import re

from conftest import ROOT

PKG = ROOT / "seq2seq"


def module_name(path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path):
    """The package modules that ``path`` imports (at any depth of the file)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("seq2seq"):
                continue
            for alias in node.names:  # "from . import x" imports the module x
                sub = f"{target}.{alias.name}"
                found.add(sub if (PKG.parent / (sub.replace(".", "/") + ".py")).exists()
                          else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("seq2seq"))
    found.discard(name)
    return found


def test_no_import_cycle():
    graph = {module_name(p): imports(p) for p in PKG.rglob("*.py")}
    state = {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", "import cycle: " + " -> ".join(path + [m])
        state[m] = "open"
        for n in sorted(graph.get(m, ())):
            visit(n, path + [m])
        state[m] = "done"

    for m in sorted(graph):
        visit(m, [])


def test_files_stay_readable():
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
             for p in PKG.rglob("*.py")}
    assert sizes["seq2seq/training/loop.py"] < 300
    assert not {p: n for p, n in sizes.items() if n > 400}


def test_developers_map_matches_the_tree():
    """DEVELOPERS.md's map: every folder of the package, each followed by its files (every file
    but ``__init__.py``, ``__main__.py`` and the caches), and nothing that is not there."""
    text = (ROOT / "DEVELOPERS.md").read_text(encoding="utf-8")
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    folders, files, folder = set(), [], None
    for line in section.splitlines():
        top = re.match(r"- `(seq2seq/(?:\w+/)?)`", line)
        item = re.match(r"  - `([\w.]+)`", line)
        if top:
            folder = top.group(1)
            folders.add(folder.rstrip("/"))
        elif item:
            assert folder, f"{line!r} comes before any folder"
            files.append(folder + item.group(1))
    tree = {p.relative_to(ROOT).as_posix() for p in PKG.rglob("*") if p.is_file()
            and "__pycache__" not in p.parts and p.name not in ("__init__.py", "__main__.py")}
    packages = {p.parent.relative_to(ROOT).as_posix() for p in PKG.rglob("__init__.py")}
    assert len(files) == len(set(files)), "listed twice in DEVELOPERS.md's map"
    assert tree - set(files) == set(), "not in DEVELOPERS.md's map (under its folder)"
    assert set(files) - tree == set(), "in DEVELOPERS.md's map but not in the tree"
    assert folders == packages, "DEVELOPERS.md's folders are not the package's"


#: where a reader finds each concept: (file, a name it defines)
CONCEPTS = {
    "LSTM and GRU cells": ("seq2seq/model/cells.py", "lstm_cell"),
    "the recurrent layer": ("seq2seq/model/rnn.py", "make_rnn"),
    "attention": ("seq2seq/model/attention.py", "BahdanauAttention"),
    "the encoder": ("seq2seq/model/encoder.py", "Encoder"),
    "the decoder": ("seq2seq/model/decoder.py", "Decoder"),
    "the encoder-decoder": ("seq2seq/model/seq2seq.py", "Seq2Seq"),
    "the fast layers": ("seq2seq/kernels/fast_rnn.py", "FastManualRNN"),
    "the hand-written backward": ("seq2seq/kernels/recurrence.py", "recurrence"),
    "the fused projection and loss": ("seq2seq/kernels/projected_loss.py",
                                      "projected_cross_entropy"),
    "the attention values' gradient": ("seq2seq/kernels/value_grads.py", "ValueGrads"),
    "the tokenizer": ("seq2seq/data/tokenizer.py", "Tokenizer"),
    "batches": ("seq2seq/data/batching.py", "Batch"),
    "the training corpus": ("seq2seq/data/corpus.py", "InMemoryCorpus"),
    "the training loop": ("seq2seq/training/loop.py", "Trainer"),
    "the training objective": ("seq2seq/training/objective.py", "Objective"),
    "the loss": ("seq2seq/training/loss.py", "masked_cross_entropy"),
    "validation": ("seq2seq/training/validation.py", "validate"),
    "teacher-forcing schedules": ("seq2seq/training/teacher_forcing.py", "ratio_for"),
    "the optimizer": ("seq2seq/training/optim.py", "make_optimizer"),
    "the moving average of the weights": ("seq2seq/training/ema.py", "WeightAverage"),
    "the checkpoint file": ("seq2seq/training/checkpoint.py", "load"),
    "seeding": ("seq2seq/training/rng.py", "seed_all"),
    "the run folder": ("seq2seq/training/run_folder.py", "RunFolder"),
    "greedy and beam search": ("seq2seq/decoding/search.py", "beam_search"),
    "ensembles": ("seq2seq/decoding/ensemble.py", "Ensemble"),
    "sampling": ("seq2seq/decoding/sampling.py", "Sampler"),
    "decode settings": ("seq2seq/decoding/settings.py", "decode_settings"),
    "scores": ("seq2seq/decoding/evaluate.py", "score"),
    "the ONNX Runtime model": ("seq2seq/decoding/onnx_model.py", "OnnxSeq2Seq"),
    "ONNX export": ("seq2seq/deploy/export.py", "export"),
    "the server": ("seq2seq/deploy/server.py", "make_app"),
    "the teacher-forcing comparison": ("seq2seq/compare/study.py", "run"),
    "the command line": ("seq2seq/cli/main.py", "build_parser"),
    "from a path to a model": ("seq2seq/load.py", "load_for_decoding"),
    "the config": ("seq2seq/config.py", "Config"),
    "the Python API": ("seq2seq/api.py", "Translator"),
}


def test_each_concept_is_in_its_folder():
    for concept, (path, name) in CONCEPTS.items():
        file = ROOT / path
        assert file.is_file(), f"{concept}: {path} is not there"
        defined = {n.name for n in ast.parse(file.read_text(encoding="utf-8")).body
                   if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        assert name in defined, f"{concept}: {path} does not define {name}"


def test_the_model_imports_no_training_decoding_deployment_or_cli():
    """The model holds the equations: nothing in ``model/`` depends on the edges."""
    edges = ("seq2seq.training", "seq2seq.decoding", "seq2seq.deploy", "seq2seq.cli")
    arrows = {f"{module_name(p)} -> {m}" for p in (PKG / "model").rglob("*.py")
              for m in imports(p) if m.startswith(edges)}
    assert not arrows


MAX_TOP_LEVEL = 14  # entries of seq2seq/ (files and folders): the rest goes into the wings


def test_few_entries_at_the_top_of_the_package():
    top = sorted(p.name for p in PKG.iterdir() if p.name != "__pycache__")
    assert len(top) <= MAX_TOP_LEVEL, top


def _assigned_roots(node):
    """The names at the root of the attribute chains that ``node`` (an assignment, or a
    ``setattr`` call) writes to: ``m.X = 1`` and ``setattr(m, "X", 1)`` give ``m``."""
    def root(target):
        if isinstance(target, (ast.Tuple, ast.List)):
            return [r for t in target.elts for r in root(t)]
        if isinstance(target, ast.Starred):
            return root(target.value)
        if not isinstance(target, ast.Attribute):
            return []
        while isinstance(target, ast.Attribute):
            target = target.value
        return [target.id] if isinstance(target, ast.Name) else []

    if isinstance(node, ast.Assign):
        return [r for t in node.targets for r in root(t)]
    if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        return root(node.target)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "setattr" and node.args):
        return root(ast.Attribute(node.args[0], "x", ast.Store()))
    return []


def test_no_module_level_switches():
    """No code sets a module's globals from outside it (``cpu_kernels.ONEDNN = False``): a
    choice is a constructor argument, not a switch flipped at run time. Checked in the package
    and scripts/: no assignment to an attribute of a name an import of seq2seq bound, and no
    ``global`` statement in the package."""
    found = []
    for path in [*PKG.rglob("*.py"), *(ROOT / "scripts").glob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update((a.asname or a.name).split(".")[0] for a in node.names
                                if a.name.split(".")[0] == "seq2seq")
            elif isinstance(node, ast.ImportFrom) and (
                    node.level or (node.module or "").split(".")[0] == "seq2seq"):
                imported.update(a.asname or a.name for a in node.names)
        where = path.relative_to(ROOT).as_posix()
        for node in ast.walk(tree):
            found += [f"{where}:{node.lineno}: sets an attribute of {name}"
                      for name in _assigned_roots(node) if name in imported]
            if isinstance(node, ast.Global) and path.is_relative_to(PKG):
                found.append(f"{where}:{node.lineno}: global {', '.join(node.names)}")
    assert not found, "\n".join(found)
