"""The README and docs/: the README stays a short guide, every relative link resolves, the
README's commands are the ones CI runs, and no page speaks in issue numbers or rounds."""

import re
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_MAX_BYTES = 15_000

#: [text](target) and ![alt](target), with an optional "title"; text may hold `code`
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
EXTERNAL = ("http://", "https://", "mailto:")
BANNED = re.compile(r"\bissue \d+|\blatest round\b|\bthis round\b|\bthis session\b", re.IGNORECASE)


def doc_files() -> List[Path]:
    return [README] + sorted((ROOT / "docs").rglob("*.md"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def links(path: Path) -> Iterator[Tuple[int, str]]:
    """(line number, target) of each link outside fenced code blocks."""
    text = path.read_text(encoding="utf-8")
    # blank the fenced blocks but keep their newlines, so line numbers stay right
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for m in LINK.finditer(text):
        yield text.count("\n", 0, m.start()) + 1, m.group(1)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())  # a link: its text
    text = re.sub(r"[^\w\- ]", "", text.replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict = {}
    out = set()
    for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, re.MULTILINE):
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_readme_is_a_short_guide():
    size = README.stat().st_size
    assert size <= README_MAX_BYTES, (
        f"README.md is {size:,} bytes, over {README_MAX_BYTES:,}: move detail to docs/")


def test_the_scan_finds_the_links_it_checks(tmp_path):
    """The link pattern itself: every form the pages use, and none inside code blocks."""
    page = tmp_path / "sample.md"
    page.write_text("[a](x.md) ![p](img/p.png) [`code`](src/m.py#L1) [t](y.md \"title\")\n"
                    "```bash\necho [not](a-link.md)\n```\n[last](z.md#part)\n", encoding="utf-8")
    found = list(links(page))
    assert found == [(1, "x.md"), (1, "img/p.png"), (1, "src/m.py#L1"), (1, "y.md"), (5, "z.md#part")]
    assert slug("Exported models: ONNX Runtime and int8") == "exported-models-onnx-runtime-and-int8"
    assert slug("A whole training run: `flops.sh`") == "a-whole-training-run-flopssh"


@pytest.mark.parametrize("page", doc_files(), ids=rel)
def test_relative_links_resolve(page):
    broken = []
    for line, target in links(page):
        if target.startswith(EXTERNAL):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{rel(page)}:{line}: ({target}) -> no file {path}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{rel(page)}:{line}: ({target}) -> no heading #{anchor} in "
                          f"{rel(dest) if dest.is_relative_to(ROOT) else dest}")
    assert not broken, "broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", doc_files(), ids=rel)
def test_no_issue_numbers_or_rounds(page):
    hits = [f"{rel(page)}:{n}: {line.strip()[:120]}"
            for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
            if BANNED.search(line)]
    assert not hits, ("say a date or a commit, not an issue number or a round:\n"
                      + "\n".join(hits))


def test_readme_commands_are_what_ci_runs():
    """The README's test command is a line of .ci/run; its setup command is scripts/setup.sh,
    and the first command runs a toy task that exists."""
    readme = README.read_text(encoding="utf-8")
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    tests = [line.strip() for line in readme.splitlines() if "-m pytest" in line]
    assert len(tests) == 1, f"README.md: expected one test command (-m pytest), found {tests}"
    assert tests[0] in ci, (f"README.md's test command {tests[0]!r} is not a line of .ci/run "
                            f"(which runs: {ci})")
    setup = tests[0].split("&&")[0].strip()
    assert setup == "bash scripts/setup.sh" and (ROOT / "scripts" / "setup.sh").is_file(), (
        f"README.md's test command starts with {setup!r}, not bash scripts/setup.sh")
    first = re.search(r"^bash scripts/setup\.sh && \.venv/bin/python (recipes/\S+\.py) (\w+) ",
                      readme, re.MULTILINE)
    assert first, "README.md: no 'bash scripts/setup.sh && .venv/bin/python recipes/...' command"
    script, task = first.groups()
    assert (ROOT / script).is_file(), f"README.md's first command runs {script}, which is missing"
    assert (ROOT / "recipes" / f"{task}.yaml").is_file(), (
        f"README.md's first command trains the task {task!r}, which has no recipes/{task}.yaml")
