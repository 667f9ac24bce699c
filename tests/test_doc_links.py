"""Links that resolve where people read them: the README and the docs as browsed on the repository's page.

Every relative link in README.md, CONTRIBUTING.md, CHANGELOG.md and docs/**/*.md must name a file or folder
that exists relative to the page (and that git does not ignore, so it is on the repository's page too), and
every ``#anchor`` a heading of the target page by GitHub's rule (lowercase, spaces to ``-``, punctuation other
than ``-`` and ``_`` dropped, ``-1``, ``-2`` for repeats). External links (``https://...``) are not fetched;
links to notebooks (``.ipynb``) need only exist. Every dotted name ``loralab.x.y`` in the pages' code (inline
or fenced; ``from loralab.x import y`` too) must import: a module, or an attribute of one. ``mkdocs build
--strict`` checks the site's links with mkdocs' own rules (tests/test_docs.py); these checks are the
repository's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[1]


def pages(root: Path = REPO) -> list[Path]:
    """The Markdown pages people read on the repository's page."""
    top = [root / name for name in ("README.md", "CONTRIBUTING.md", "CHANGELOG.md")]
    return top + sorted((root / "docs").rglob("*.md"))


FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
INLINE_LINK = re.compile(r"\]\(\s*(<[^>]*>|[^)\s]+)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.MULTILINE)
HTML_LINK = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
DOTTED = re.compile(r"(?<![\w.])loralab(?:\.[A-Za-z_]\w*)+")
FROM_IMPORT = re.compile(r"\bfrom\s+(loralab(?:\.\w+)*)\s+import\s+\(?\s*(\w+(?:\s*,\s*\w+)*)")


def blank_fences(text: str) -> tuple[str, str]:
    """(the page with its fenced code blocks blanked, line breaks kept; the blocks' text)."""
    prose, code, fence = [], [], None
    for line in text.split("\n"):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is not None and line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            fence = None
        elif fence is not None:
            code.append(line)
        else:
            prose.append(line)
            continue
        prose.append("")
    return "\n".join(prose), "\n".join(code)


def split_code(text: str) -> tuple[str, list[str]]:
    """(the page with code blocks and code spans blanked, line breaks kept; the code's own text)."""
    prose, fenced = blank_fences(text)
    spans = []

    def blank(match: re.Match) -> str:
        spans.append(match.group(2))
        return "`" + re.sub(r"[^\n]", " ", match.group(2)) + "`"

    return CODE_SPAN.sub(blank, prose), [fenced, *spans]


def heading_text(raw: str) -> str:
    """A heading's text as GitHub renders it: code spans' text kept as is, links and images to their text,
    HTML tags and emphasis markers dropped."""
    parts = re.split(r"(`+[^`]*`+)", raw)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(part.strip("`").strip())
            continue
        part = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", part)
        part = re.sub(r"<[^>]+>", "", part)
        part = re.sub(r"(?<!\w)_+(\S(?:.*?\S)?)_+(?!\w)", r"\1", part)
        out.append(part)
    return "".join(out)


def github_slug(text: str) -> str:
    """GitHub's anchor for a heading text: lowercase, punctuation (all but ``-`` and ``_``) dropped,
    each space a ``-``."""
    return re.sub(r"[^\w\- ]", "", heading_text(text).strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a Markdown page (repeats get -1, -2, ... as on GitHub)."""
    prose, _ = blank_fences(page.read_text())
    seen: dict[str, int] = {}
    found = set()
    for line in prose.split("\n"):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2) or "")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link on a page outside code: inline, reference definitions, HTML."""
    prose, _ = split_code(page.read_text())
    found = []
    for pattern in (INLINE_LINK, REFERENCE_DEFINITION, HTML_LINK):
        for match in pattern.finditer(prose):
            target = match.group(1).strip("<>")
            found.append((prose.count("\n", 0, match.start()) + 1, target))
    return sorted(found)


def ignored_by_git(paths: list[Path], root: Path) -> set[Path]:
    """The paths git ignores (not on the repository's page even where they exist here); none outside git."""
    if not paths or shutil.which("git") is None or not (root / ".git").exists():
        return set()
    proc = subprocess.run(["git", "-C", str(root), "check-ignore", "--stdin"], input="\n".join(map(str, paths)),
                          capture_output=True, text=True, check=False)
    return {Path(line) for line in proc.stdout.splitlines()}


def link_problems(page: Path, root: Path = REPO) -> list[str]:
    """One line per link of ``page`` that does not resolve in the repository at ``root``."""
    problems, targets = [], []
    where = page.relative_to(root).as_posix()
    for line, target in links(page):
        if SCHEME.match(target) or target.startswith("//"):
            continue  # external (https:, mailto:): not fetched
        path, _, anchor = target.partition("#")
        path = unquote(path)
        resolved = page if not path else Path(os.path.normpath((root if path.startswith("/") else page.parent)
                                                                / path.lstrip("/")))
        if resolved != root and root not in resolved.parents:
            problems.append(f"{where}:{line}: {target} points outside the repository")
            continue
        if not resolved.exists():
            problems.append(f"{where}:{line}: {target}: {resolved.relative_to(root).as_posix()} does not exist")
            continue
        targets.append((line, target, resolved))
        if anchor and resolved.suffix == ".md" and unquote(anchor).lower() not in anchors(resolved):
            problems.append(f"{where}:{line}: {target}: no heading of {resolved.relative_to(root).as_posix()} "
                            f"has the anchor #{anchor}")
    ignored = ignored_by_git([resolved for _, _, resolved in targets], root)
    problems += [f"{where}:{line}: {target}: {resolved.relative_to(root).as_posix()} is ignored by git, so it "
                 f"is not on the repository's page" for line, target, resolved in targets if resolved in ignored]
    return problems


def dotted_names(page: Path) -> set[str]:
    """Every ``loralab.x.y`` in a page's code spans and code blocks, and what its ``from loralab... import``
    lines import."""
    _, code = split_code(page.read_text())
    names = set()
    for text in code:
        text = " ".join(text.split())
        names.update(DOTTED.findall(text))
        for module, imported in FROM_IMPORT.findall(text):
            names.update(f"{module}.{name.strip()}" for name in imported.split(","))
    return names


RESOLVE = r"""
import importlib, json, sys

def resolve(name):
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and (module_name == error.name or module_name.startswith(error.name + ".")) and i > 1:
                continue
            return f"importing {module_name} fails: {error}"
        except Exception as error:
            return f"importing {module_name} fails: {type(error).__name__}: {error}"
        for depth, attr in enumerate(parts[i:], start=i):
            if not hasattr(obj, attr):
                return f"{'.'.join(parts[:depth])} has no {attr!r}"
            obj = getattr(obj, attr)
        return None

names = json.loads(sys.stdin.read())
with open(sys.argv[1], "w") as out:
    json.dump({name: problem for name in names if (problem := resolve(name))}, out)
"""


def unresolved(names: list[str], tmp_path: Path) -> dict[str, str]:
    """name -> why it does not import, for the names that do not; one Python process imports them all."""
    result = tmp_path / "unresolved.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([p for p in sys.path if p])}
    proc = subprocess.run([sys.executable, "-c", RESOLVE, str(result)], input=json.dumps(names), env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(result.read_text())


def test_the_pages_people_read_first_are_there():
    for name in ("README.md", "CONTRIBUTING.md", "CHANGELOG.md", "LICENSE", "CITATION.cff"):
        assert (REPO / name).is_file(), f"{name} is missing"


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_and_anchor_resolves(page):
    problems = link_problems(page)
    assert not problems, "dead links:\n" + "\n".join(problems)


def test_every_loralab_name_in_the_docs_imports(tmp_path):
    mentioned: dict[str, list[str]] = {}
    for page in pages():
        for name in dotted_names(page):
            mentioned.setdefault(name, []).append(page.relative_to(REPO).as_posix())
    assert "loralab.runs.notebook_cells" in mentioned and "loralab.adapters.load_verified_adapter" in mentioned
    problems = unresolved(sorted(mentioned), tmp_path)
    assert not problems, "names the docs mention that do not import:\n" + "\n".join(
        f"{name} ({', '.join(sorted(set(mentioned[name])))}): {why}" for name, why in sorted(problems.items()))


def test_github_slugs():
    assert github_slug("Train on your own data") == "train-on-your-own-data"
    assert github_slug("Several GPUs (`--gpus`, `--strategy ddp|fsdp`)") == "several-gpus---gpus---strategy-ddpfsdp"
    assert github_slug("Sweep: completions per prompt, beta, learning rate (`params/sweeps/grpo.yaml`)") == (
        "sweep-completions-per-prompt-beta-learning-rate-paramssweepsgrpoyaml")
    assert github_slug("`metrics.json` (notebook 05)") == "metricsjson-notebook-05"
    assert github_slug("Keys of `max_seq_length` and [the planner](planner.md)") == (
        "keys-of-max_seq_length-and-the-planner")


def test_a_broken_link_anchor_or_name_is_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "target.md").write_text("# Target\n\n## A section: `x_y`\n\n```\n# not a heading\n```\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text("[ok](target.md#a-section-x_y) [ok](target.md) [ok](#here) [ok](../docs/) "
                    "[web](https://example.com/missing)\n"
                    "# Here\n\n"
                    "[gone](missing.md) [no anchor](target.md#not-a-heading) [up](../../outside.md)\n"
                    "`[in code](missing.md)`\n\n"
                    "```python\nfrom loralab.export import merge_adapter, not_there\n[x](missing.md)\n```\n"
                    "[ref]: target.md#nowhere\n")
    assert link_problems(page, root=tmp_path) == [
        "docs/page.md:4: ../../outside.md points outside the repository",
        "docs/page.md:4: missing.md: docs/missing.md does not exist",
        "docs/page.md:4: target.md#not-a-heading: no heading of docs/target.md has the anchor #not-a-heading",
        "docs/page.md:11: target.md#nowhere: no heading of docs/target.md has the anchor #nowhere"]
    assert dotted_names(page) == {"loralab.export", "loralab.export.merge_adapter", "loralab.export.not_there"}
    # loralab.plan imports without torch: this check stays quick
    assert unresolved(["loralab.plan.not_there", "loralab.plan.plan", "loralab.plan.planner", "loralab.nowhere.x"],
                      tmp_path) == {"loralab.plan.not_there": "loralab.plan has no 'not_there'",
                                    "loralab.nowhere.x": "loralab has no 'nowhere'"}
