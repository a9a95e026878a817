"""The front door and the docs site: README.md stays a short front page whose links resolve, every record
is listed in the records index, and the MkDocs site builds strictly — and fails when a link breaks.

The build tests need the ``[docs]`` extra (mkdocs); .ci/run installs it, a plain dev venv skips them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"


def test_readme_is_a_front_door() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 300, "README.md is over 300 lines: move the detail to a page under docs/"
    # no lab notebook on the front page: dates, commit hashes and machines go with the record they explain
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text), "a date in README.md"
    hashes = [h for h in re.findall(r"\b[0-9a-f]{7,40}\b", text) if re.search(r"[a-f]", h) and re.search(r"\d", h)]
    assert not hashes, f"commit hashes in README.md: {hashes}"
    for machine in ("Xeon", "EPYC", "H200", "AVX"):
        assert machine not in text, f"README.md names a machine ({machine})"


def test_readme_links_resolve() -> None:
    """README.md is outside the site, so mkdocs does not check it: its links to files and headings are checked here."""
    from markdown.extensions.toc import slugify

    text = README.read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#([^)]*))?\)", text)
    local = [(link, anchor) for link, anchor in links if not re.match(r"[a-z]+://", link)]
    assert local, "README.md links nowhere"
    missing = [link for link, _ in local if not (REPO / link).exists()]
    assert not missing, f"README.md links to missing files: {missing}"
    for link, anchor in local:
        if anchor:
            headings = re.findall(r"^#+ (.+)$", (REPO / link).read_text(), flags=re.M)
            assert anchor in {slugify(h, "-") for h in headings}, f"README.md: {link} has no heading #{anchor}"


def test_every_record_is_in_the_records_index() -> None:
    index = (DOCS / "records" / "index.md").read_text()
    linked = set(re.findall(r"\]\(([^)#]+)", index))
    entries = [p.name for p in sorted((DOCS / "records").iterdir()) if p.name != "index.md"]
    unlisted = [name for name in entries
                if not any(link == name or link.startswith(name + "/") for link in linked)]
    assert not unlisted, f"docs/records/index.md does not list: {unlisted}"


def _build(root: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=root, env=env, capture_output=True, text=True)


def _copy_site_sources(tmp_path: Path) -> Path:
    """mkdocs.yml, docs/, the hook and the package sources (the API pages read them) in a folder of their own."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(REPO / "mkdocs.yml", root)
    shutil.copytree(DOCS, root / "docs")
    shutil.copytree(REPO / "cryomonai", root / "cryomonai", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "tools").mkdir()
    shutil.copy(REPO / "tools" / "docs_hooks.py", root / "tools")
    return root


@pytest.mark.timeout(180)
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    done = _build(REPO, tmp_path / "site")
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert (tmp_path / "site" / "results" / "grid_cpu" / "index.html").is_file()
    assert (tmp_path / "site" / "reference" / "api" / "io" / "index.html").is_file()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("breakage, expected", [
    (("](../grid_cpu/table.md)", "](../grid_cpu/no_such_table.md)"), "no_such_table.md"),
    (("](../grid_cpu/table.md)", "](../grid_cpu/table.md#no-such-heading)"), "no-such-heading"),
])
def test_a_broken_link_fails_the_build(tmp_path: Path, breakage: tuple[str, str], expected: str) -> None:
    pytest.importorskip("mkdocs")
    root = _copy_site_sources(tmp_path)
    page = root / "docs" / "results" / "grid_cpu.md"
    old, new = breakage
    assert old in page.read_text(), f"{page.name} no longer has the link this test breaks: {old}"
    page.write_text(page.read_text().replace(old, new, 1))
    done = _build(root, tmp_path / "site")
    assert done.returncode != 0, "mkdocs build --strict passed with a broken link"
    assert expected in done.stdout + done.stderr
