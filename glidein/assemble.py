"""glidein_startup.sh, assembled from its parts: the one script a pilot receives.

The glidein is written as parts, so that a test can source one and call one
function (glidein/README.md, "Layout"):

- ``lib/<part>.sh`` define functions (and their constants) and run nothing;
- ``templates/condor_config.in`` is the startd's configuration, embedded
  as the shell function ``condor_config_template``;
- ``main.sh`` holds the pilot's state and its main flow, and runs it.

A pilot still gets a single file: the plain, ordered concatenation of
those, with nothing taken from the environment, so the same parts always
give the same bytes and the digest of the assembled script covers exactly
what runs. `shipped_script` keeps ``glidein_startup.sh`` beside the parts
equal to that assembly, which is what the factory hands to HTCondor.

Only the standard library is used: ``setup.py`` loads this file from the
source tree to put the assembled script into the wheel.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

GLIDEIN_DIR = Path(__file__).resolve().parent
SCRIPT_NAME = "glidein_startup.sh"
PARTS = (
    "lib/common.sh",
    "lib/args.sh",
    "lib/fetch.sh",
    "lib/validate.sh",
    "lib/install.sh",
    "lib/lifetime.sh",
    "lib/template.sh",
    "lib/condor_config.sh",
    "lib/condor.sh",
    "lib/nodes.sh",
    "lib/history.sh",
    "lib/report.sh",
)
"""The function-only parts, in the order they are assembled (any order would run the same)."""
CONDOR_CONFIG_TEMPLATE = "templates/condor_config.in"
MAIN = "main.sh"
TEMPLATE_END = "UPDRAFT_CONDOR_CONFIG_TEMPLATE_END"
"""The heredoc's terminator: a template line equal to it would end the template early."""


class AssemblyError(Exception):
    """The parts cannot make a script (a missing part, a template that would end its heredoc)."""


def assemble(source: Path = GLIDEIN_DIR) -> str:
    """The glidein script: main.sh's opening comment, every part, the template, then main.sh's body."""
    opening, body = _split_opening(_read(source, MAIN))
    pieces = [
        opening,
        "#\n# Assembled by updraft.glidein.assemble from the files named below; edit\n"
        '# those, not this script (glidein/README.md, "Layout").\n'
        "# shellcheck disable=SC2016  # '$(NAME)' in single quotes is an HTCondor macro, written as is\n",
    ]
    for part in PARTS:
        pieces.append(_section(part, _without_directives(_read(source, part))))
    pieces.append(_section(CONDOR_CONFIG_TEMPLATE, _template_function(_read(source, CONDOR_CONFIG_TEMPLATE))))
    pieces.append(_section(MAIN, body))
    return "".join(pieces)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_script(target: Path, source: Path = GLIDEIN_DIR) -> Path:
    """Write the assembly to `target` (mode 0755), atomically: a reader never sees half a script."""
    text = assemble(source)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def shipped_script(folder: Path = GLIDEIN_DIR) -> Path:
    """``glidein_startup.sh`` in `folder`, checked by digest against the assembly of the parts there.

    A wheel ships it already assembled (setup.py); a source checkout gets
    it written on first use and again whenever a part changes. A stale
    copy that cannot be rewritten (a read-only install) is an error, never
    silently handed to pilots.
    """
    target = folder / SCRIPT_NAME
    expected = sha256(assemble(folder))
    if _file_sha256(target) == expected:
        return target
    try:
        write_script(target, folder)
    except OSError as err:
        raise AssemblyError(
            f"{target} is not the assembly of the glidein's parts and cannot be rewritten: {err}"
        ) from err
    return target


def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _read(source: Path, name: str) -> str:
    try:
        text = (source / name).read_text()
    except OSError as err:
        raise AssemblyError(f"cannot read the glidein part {name}: {err}") from err
    return text if text.endswith("\n") else text + "\n"


def _split_opening(text: str) -> tuple[str, str]:
    """main.sh's shebang and opening comment (which stay on top), and the rest.

    Its own shellcheck directives are dropped: they only silence, for the
    part alone, state that the other parts set and read.
    """
    lines = text.splitlines(keepends=True)
    end = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    return "".join(_without_directives("".join(lines[:end]))), "".join(lines[end:])


def _without_directives(text: str) -> str:
    """A part without its opening ``# shellcheck`` lines: the assembled script is checked as a whole."""
    lines = text.splitlines(keepends=True)
    end = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    return "".join(line for i, line in enumerate(lines) if i >= end or not line.startswith("# shellcheck"))


def _section(name: str, text: str) -> str:
    return f"\n# {'-' * 75}\n# glidein/{name}\n# {'-' * 75}\n{text}"


def _template_function(template: str) -> str:
    """The template as a function printing it; the quoted heredoc leaves $ and \\ alone."""
    if TEMPLATE_END in template.splitlines():
        raise AssemblyError(f"{CONDOR_CONFIG_TEMPLATE} has a line {TEMPLATE_END}, which would end its heredoc")
    return (
        "\ncondor_config_template() {\n"
        "    # The startd's configuration, to be filled in by render_condor_config.\n"
        f"    cat <<'{TEMPLATE_END}'\n{template}{TEMPLATE_END}\n}}\n"
    )
