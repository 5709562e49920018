"""Shared fixtures: small YAML config trees under tmp_path, and a web server for staging areas."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from updraft.monitoring.report import Reporter

from .glidein_helpers import serving

FACTORY_MAIN = """\
    name: test-factory
    wms_collector: 127.0.0.1:29619
    schedd: factory@lab
    entries:
      site1:
        grid_type: condor
        resource: "ce@site1.lab 127.0.0.1:29620"
        attributes:
          GLIDEIN_Site: Site1
        limits:
          max_pilots: 100
          max_idle: 10
"""

FRONTEND_MAIN = """\
    name: test-vo
    vo_collector: 127.0.0.1:29618
    wms_collector: 127.0.0.1:29619
    schedds: [vo-schedd@lab]
    factories:
      test-factory:
        identity: updraft@lab
    groups:
      main:
        job_constraint: "JobUniverse == 5"
        match_expr: "true"
"""


class Snapshots(Reporter):
    """A reporter with no writers that keeps every snapshot it is given, for tests of whole cycles."""

    def __init__(self) -> None:
        super().__init__((), 1.0, {})
        self.seen: list[Any] = []

    def report(self, snapshot: Any) -> None:
        self.seen.append(snapshot)


class ConfigTree:
    """A directory of config files; `write` dedents, so tests can indent YAML naturally."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def factory(self, *drop_ins: tuple[str, str], main: str = FACTORY_MAIN) -> Path:
        """etc/factory.yaml (a valid one by default) plus etc/factory.d/<name> drop-ins."""
        for name, text in drop_ins:
            self.write(f"etc/factory.d/{name}", text)
        return self.write("etc/factory.yaml", main)

    def frontend(self, *drop_ins: tuple[str, str], main: str = FRONTEND_MAIN) -> Path:
        """etc/frontend.yaml (a valid one by default) plus etc/frontend.d/<name> drop-ins."""
        for name, text in drop_ins:
            self.write(f"etc/frontend.d/{name}", text)
        return self.write("etc/frontend.yaml", main)


@pytest.fixture
def tree(tmp_path: Path) -> ConfigTree:
    return ConfigTree(tmp_path)


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    """An http server for tmp_path/area (created empty); yields its URL."""
    (tmp_path / "area").mkdir()
    with serving(tmp_path / "area") as url:
        yield url
