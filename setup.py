"""Build hook: the wheel ships glidein_startup.sh already assembled from the glidein's parts.

Everything else is in setup.cfg. An install the factory cannot write to
(root's site-packages, say) must still hold the script, so it is written
into the build at build time, by the same code that checks it at run time
(glidein/assemble.py, loaded from the built copy: no import of the package
is needed before it is installed).
"""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithGlidein(build_py):
    """build_py, then the glidein's parts in the build assembled into its one script."""

    def run(self) -> None:
        super().run()
        glidein = Path(self.build_lib) / "updraft" / "glidein"
        if (glidein / "assemble.py").is_file():
            _assembler(glidein / "assemble.py").write_script(glidein / "glidein_startup.sh", glidein)


def _assembler(path: Path):
    spec = importlib.util.spec_from_file_location("_updraft_glidein_assemble", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


setup(cmdclass={"build_py": BuildPyWithGlidein})
