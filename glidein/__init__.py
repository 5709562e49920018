"""The glidein (pilot) that runs on worker nodes.

What runs on the node is POSIX shell (`glidein_startup.sh`, assembled from
the parts in lib/ by `assemble`); this package also holds the factory-side
helpers, such as `report.parse_report` for the report a pilot prints at
exit. README.md has the interface.

A cloud pilot (EC2, GCE) is a machine image instead: it boots with
``vm/updraft-vm-bootstrap``, which reads the user data
(`updraft.userdata`) and starts the same glidein.
"""

from pathlib import Path


def vm_bootstrap_path() -> Path:
    """The entry script a cloud pilot's image runs at boot, as installed (setup.cfg ships it).

    Image builders copy it into the image; the lab runs it in its root as a
    stand-in for a VM.
    """
    return Path(__file__).resolve().parent / "vm" / "updraft-vm-bootstrap"
