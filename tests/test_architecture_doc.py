"""docs/architecture.md lists every module of the package, as the tree holds them."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _in_tree() -> set[str]:
    package = REPO / "orchestrator"
    return {
        str(path.relative_to(REPO))
        for path in package.rglob("*.py")
        if not (path.name == "__init__.py" and path.parent == package)
        and not (path.name == "__init__.py" and path.parent.parent == package)
    }


def _on_the_page() -> set[str]:
    """Return the modules the page's "Packages and modules" tables name, as paths."""
    page = (REPO / "docs" / "architecture.md").read_text()
    section = page[page.index("## Packages and modules") :]
    section = section[: section.index("\n## ", 5)]
    listed, package = set(), ""
    for line in section.splitlines():
        if line.startswith("### `orchestrator/"):
            package = line.split("`")[1]
        elif line.startswith("| `"):
            name = line.split("`")[1]
            listed.add(name if name.startswith("orchestrator/") else package + name)
    return listed


def test_every_module_has_its_line_in_the_architecture_page() -> None:
    missing = sorted(_in_tree() - _on_the_page())
    assert not missing, f"docs/architecture.md does not list: {', '.join(missing)}"


def test_the_page_names_no_module_that_is_gone() -> None:
    gone = sorted(_on_the_page() - _in_tree())
    assert not gone, f"docs/architecture.md lists modules that are gone: {', '.join(gone)}"
