"""The package's shape: no import cycle, files a reader can take in, and a layout table in
DEVELOPERS.md that matches the files."""

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


def test_developers_layout_table_matches_the_files():
    text = (ROOT / "DEVELOPERS.md").read_text(encoding="utf-8")
    table = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    listed = set()
    for cell in re.findall(r"^\| ([^|]+) \|", table, flags=re.M):
        listed.update(re.findall(r"`(seq2seq/[\w/]+\.py)`", cell))
        listed.update(f"seq2seq/{m}" for m in re.findall(r"`(\w+\.py)`", cell))
    files = {p.relative_to(ROOT).as_posix() for p in PKG.rglob("*.py")
             if p.name not in ("__init__.py", "__main__.py")}
    assert files - listed == set(), "not in DEVELOPERS.md's layout table"
    assert listed - files == set(), "in DEVELOPERS.md's layout table but not a file"
