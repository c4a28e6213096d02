"""The documents stay true to the tree: links resolve, the README's layout names what exists,
the configuration page names every setting, and nothing points outside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from zootrain.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(
    [
        ROOT / "README.md",
        ROOT / "CHANGELOG.md",
        ROOT / "bench" / "README.md",
        *ROOT.glob("docs/*.md"),
    ]
)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def prose(page: Path) -> str:
    """The page without its code blocks (a bracket in a shell line is no link)."""
    return FENCE.sub("", page.read_text())


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", prose(page), re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves_inside_the_repository(page: Path) -> None:
    assert "../shared" not in page.read_text(), f"{page.name} points outside the repository"
    for target in LINK.findall(prose(page)):
        if re.match(r"^[a-z]+:", target):  # http(s), mailto: not ours to check
            continue
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.is_relative_to(ROOT), f"{page.name}: {target} leaves the repository"
        assert resolved.exists(), f"{page.name}: {target} does not exist"
        if fragment:
            assert fragment in anchors(resolved), f"{page.name}: no heading for {target}"


def layout_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Layout") :]
    return section[section.index("```\n") + 4 : section.index("\n```", section.index("```\n") + 4)]


def test_the_readme_layout_names_what_exists() -> None:
    parent = ROOT
    listed_dirs: set[str] = set()
    for line in layout_block().splitlines():
        # "dir/  what it is" at the margin; "  name.py, name.py  what they are" under it; deeper
        # indents continue a description.
        indent = len(line) - len(line.lstrip())
        names = line.strip().partition("  ")[0]
        if indent == 0 and names:
            parent = ROOT / names
            listed_dirs.add(names.rstrip("/"))
            assert parent.is_dir(), f"README Layout: {names} is not a directory"
        elif indent == 2:
            for name in names.split(", "):
                path = parent / name
                # a module that became a package of the same name still matches (cli.py, cli/)
                exists = path.exists() or (name.endswith(".py") and (parent / name[:-3]).is_dir())
                assert exists, f"README Layout: {path.relative_to(ROOT)} does not exist"
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    top_dirs = {f.split("/")[0] for f in tracked if "/" in f and not f.startswith(".")}
    assert top_dirs <= listed_dirs, f"README Layout misses {sorted(top_dirs - listed_dirs)}"


def test_the_readme_stays_a_first_page() -> None:
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= 300, f"README.md has {lines} lines: move the detail to a page under docs/"


def test_the_configuration_page_names_every_setting() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"`(ZOOTRAIN_[A-Z_]+)`", page))
    settings = {f"ZOOTRAIN_{name.upper()}" for name in Settings.model_fields}
    assert settings <= documented, f"undocumented: {sorted(settings - documented)}"
