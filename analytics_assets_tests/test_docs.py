"""The documentation site (mkdocs.yml, docs/): it builds in strict mode, loads nothing from
outside, its API reference is what scripts/docs/api_reference.py makes of the committed spec,
and the guides' examples run for real and print what the guides say they print.

Marking an example in a page (an HTML comment, invisible on the site, on the line before a
fenced block):

    <!-- test: file taxonomy.yaml -->   the block is written to that file first
    <!-- test: run -->                  the block (```bash or ```python) is run
    <!-- test: output -->               the block is what the run before it prints; `...`
                                        stands for any text (doctest's ELLIPSIS), and runs of
                                        whitespace compare equal

A page's examples run in order, in one fresh folder (their working directory). A bash example
runs in a shell with the project's venv first on PATH, a fresh DAGSTER_HOME, and MONGODB_URI
on the tests' nx-27017 server with a database of the page's own; nothing else of the test's
environment leaks in. A Python example runs in the test's interpreter (`run_python`).
"""

from __future__ import annotations

import contextlib
import doctest
import importlib.util
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GUIDES = sorted((DOCS / "guides").glob("*.md"))
BIN = Path(sys.executable).parent
MARKER = re.compile(r"^<!-- test: (run|output|file [\w./-]+) -->\s*$")
FENCE = re.compile(r"^(`{3,})\s*(\w*)")
# Examples each guide must keep runnable (so that deleting a marker fails, not skips).
MINIMUM_EXAMPLES = {
    "point-at-your-nocodb.md": 2,
    "write-your-taxonomy.md": 3,
    "operate-and-recover.md": 2,
}


@dataclass
class Block:
    marker: str  # "run", "output" or "file <name>"
    language: str
    text: str
    line: int


@dataclass
class Example:
    language: str
    code: str
    line: int
    expected: str | None = None
    files: dict[str, str] = field(default_factory=dict)


def marked_blocks(page: Path) -> list[Block]:
    """Every fenced block that a `<!-- test: ... -->` line introduces."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        marker = MARKER.match(lines[index])
        index += 1
        if not marker:
            continue
        fence = FENCE.match(lines[index]) if index < len(lines) else None
        assert fence, f"{page.name}:{index}: a test marker must be followed by a fenced block"
        start = index + 1
        end = start
        while not lines[end].startswith(fence.group(1)):
            end += 1
        text = "\n".join(lines[start:end]) + "\n"
        blocks.append(Block(marker.group(1), fence.group(2), text, start))
        index = end + 1
    return blocks


def examples(page: Path) -> list[Example]:
    """The page's runnable examples, each with its expected output and the files before it."""
    found: list[Example] = []
    files: dict[str, str] = {}
    for block in marked_blocks(page):
        where = f"{page.name}:{block.line}"
        if block.marker.startswith("file "):
            files[block.marker.removeprefix("file ")] = block.text
        elif block.marker == "run":
            assert block.language in ("bash", "python"), f"{where}: run bash or python"
            found.append(Example(block.language, block.text, block.line, files=files))
            files = {}
        else:
            assert found and found[-1].expected is None, f"{where}: output without a run"
            found[-1].expected = block.text
    for example in found:
        assert example.expected is not None, f"{page.name}:{example.line}: no output block"
    return found


def test_the_guides_keep_their_runnable_examples():
    counted = {page.name: len(examples(page)) for page in GUIDES}
    for name, minimum in MINIMUM_EXAMPLES.items():
        assert counted.get(name, 0) >= minimum, f"{name}: {counted.get(name)} examples"
    assert sum(counted.values()) >= 4


@pytest.mark.parametrize(
    "page", [page for page in GUIDES if marked_blocks(page)], ids=lambda page: page.stem
)
def test_the_guides_examples_print_what_they_say(page, mongo_server, tmp_path, monkeypatch):
    cases = examples(page)
    env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(ROOT),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "MONGODB_URI": mongo_server,
        "MONGODB_DATABASE": "docs_" + page.stem.replace("-", "_"),
    }
    (tmp_path / "dagster_home").mkdir()
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for case in cases:
        for name, text in case.files.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(text, encoding="utf-8")
        where = f"{page.name}:{case.line}"
        if case.language == "bash":
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", case.code],
                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert result.returncode == 0, f"{where} exited {result.returncode}:\n{result.stderr}"
            printed = result.stdout
        else:
            printed = run_python(case.code, where, tmp_path, monkeypatch)
        assert checker.check_output(case.expected, printed, flags), (
            f"{where} printed:\n{printed}\nthe page says:\n{case.expected}"
        )


def run_python(code: str, where: str, folder: Path, monkeypatch) -> str:
    """A Python example runs in this interpreter, in the page's folder, as a reader would
    paste it into theirs: its imports are the project's, and the language detector it loads
    (seconds) is loaded once for every example rather than once each."""
    monkeypatch.chdir(folder)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, where, "exec"), {"__name__": "__main__"})
    return printed.getvalue()


def _api_reference_script():
    path = ROOT / "scripts" / "docs" / "api_reference.py"
    spec = importlib.util.spec_from_file_location("api_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_api_reference_is_generated_from_the_committed_spec():
    script = _api_reference_script()
    committed = (DOCS / "reference" / "api.md").read_text(encoding="utf-8")
    assert committed == script.render(script.json.loads(script.SPEC.read_text())), (
        "docs/reference/api.md is stale: run `python scripts/docs/api_reference.py`"
    )


def test_the_api_reference_names_every_operation_its_scope_and_schema():
    script = _api_reference_script()
    spec = script.json.loads(script.SPEC.read_text())
    page = script.render(spec)
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert f"### {method.upper()} `{path}`" in page
            scopes = [s for r in operation.get("security", []) for s in next(iter(r.values()))]
            for scope in scopes:
                assert f"`{scope}`" in page
    for name in spec["components"]["schemas"]:
        assert f"### {name} {{#{name}}}" in page
    # Every protected operation of the read API names its scope in the spec.
    protected = [op for item in spec["paths"].values() for op in item.values() if "security" in op]
    assert protected and all(next(iter(op["security"][0].values())) for op in protected)


class _OutsideResources(HTMLParser):
    """What a page would load from another origin: scripts, styles, images, frames, fonts."""

    LOADING = {("script", "src"), ("link", "href"), ("img", "src"), ("iframe", "src"),
               ("source", "src"), ("video", "src"), ("audio", "src"), ("embed", "src"),
               ("object", "data")}  # fmt: skip

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if (tag, name) in self.LOADING and value and re.match(r"(https?:)?//", value):
                self.found.append(f"<{tag} {name}={value}>")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


def test_the_site_builds_strictly(site):
    for page in ["index", "guides/write-your-taxonomy", "reference/api", "operations"]:
        assert (site / f"{page}.html").is_file(), page
    built = {p.relative_to(site).with_suffix(".md") for p in site.rglob("*.html")}
    sources = {p.relative_to(DOCS) for p in DOCS.rglob("*.md")}
    assert sources <= built
    assert (site / "openapi.json").is_file()  # the reference links the spec itself


def test_the_site_loads_nothing_from_outside(site):
    pages = list(site.rglob("*.html"))
    assert pages
    for page in pages:
        parser = _OutsideResources()
        parser.feed(page.read_text(encoding="utf-8"))
        assert not parser.found, f"{page.relative_to(site)} loads {parser.found}"
    for sheet in site.rglob("*.css"):
        text = sheet.read_text(encoding="utf-8")
        assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import", text), sheet.name


def test_a_broken_link_or_a_page_left_out_fails_the_build(tmp_path):
    """Strict mode with mkdocs.yml's validation is what catches them: a copy of the docs with
    a link to a missing page, one to a missing heading and a page the nav leaves out must
    fail to build, naming all three."""
    import shutil

    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    with (docs / "index.md").open("a", encoding="utf-8") as page:
        page.write("\n[gone](no-such-page.md) and [stale](operations.md#no-such-heading)\n")
    (docs / "orphan-page.md").write_text("# In no nav\n", encoding="utf-8")
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    (tmp_path / "mkdocs.yml").write_text(config, encoding="utf-8")
    result = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert result.returncode != 0
    for problem in ("no-such-page.md", "no-such-heading", "orphan-page.md"):
        assert problem in result.stderr, problem
