"""A field's docstring stands right under the field it describes.

Python keeps no link between an attribute and the string after it: tools and
readers take the string under a field as its documentation. Two strings in a
row mean one of them moved away from its field when fields were added or
reordered (it happened to `CompletedPilot.report_problem`), so it now
describes its neighbour.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "factory", "frontend", "glidein", "monitoring", "lab")


def _is_string(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def strings_in_a_row(source: str) -> list[int]:
    """Line numbers of every string statement that follows another one in the same body."""
    found = []
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            found += [b.lineno for a, b in itertools.pairwise(body) if _is_string(a) and _is_string(b)]
    return found


def test_the_check_finds_a_docstring_moved_off_its_field() -> None:
    moved = 'class A:\n    a: int\n    b: int\n    """of b"""\n    """of a"""\n'
    assert strings_in_a_row(moved) == [5]
    assert strings_in_a_row('class A:\n    """A."""\n\n    a: int\n    """of a"""\n') == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_docstring_stands_under_another(package: str) -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line in strings_in_a_row(path.read_text(encoding="utf-8"))
    ]
    assert found == []
