"""Factory and frontend configs that fit the lab, as `lab env` writes them.

They are derived from the topology, so they always name the lab's real
addresses, and they go through the same loaders as an operator's files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from updraft.lab.runtime import LAB_USER
from updraft.lab.topology import UID_DOMAIN, Topology

FACTORY_NAME = "lab-factory"
FRONTEND_NAME = "lab-vo"


def factory_config(topology: Topology) -> dict[str, Any]:
    entries = {
        site.name: {
            "grid_type": "condor",
            "resource": site.ce_resource,
            "attributes": {"GLIDEIN_Site": site.glidein_site, "GLIDEIN_CPUS": 1},
            "limits": {"max_pilots": 20, "max_idle": 5, "max_held": 5},
        }
        for site in topology.sites
    }
    return {
        "name": FACTORY_NAME,
        "wms_collector": topology.wms.collector,
        "schedd": topology.factory.schedd_name,
        "work_dir": str(topology.work_dir / "factory"),
        "cycle_seconds": 10,
        "entries": entries,
    }


def frontend_config(topology: Topology) -> dict[str, Any]:
    return {
        "name": FRONTEND_NAME,
        "vo_collector": topology.vo.collector,
        "wms_collector": topology.wms.collector,
        "schedds": [topology.vo.schedd_name],
        "cycle_seconds": 10,
        "factories": {FACTORY_NAME: {"identity": f"{LAB_USER}@{UID_DOMAIN}"}},
        "groups": {"main": {"job_constraint": "true", "match_expr": "true"}},
    }


def write_component_configs(topology: Topology) -> dict[str, Path]:
    """Write etc/factory.yaml and etc/frontend.yaml in the lab folder; returns their paths."""
    topology.etc_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for component, content in (("factory", factory_config(topology)), ("frontend", frontend_config(topology))):
        path = topology.etc_dir / f"{component}.yaml"
        header = f"# Written by `updraft lab env` for the lab in {topology.base_dir}.\n"
        path.write_text(header + yaml.safe_dump(content, sort_keys=False))
        written[component] = path
    return written
