"""The ``monitoring:`` section shared by the factory and frontend configurations.

Writers are a mapping from a writer's name to its own section, which the
writer's plugin validates; a bare list of names means every writer with
its defaults. Problems are reported with the writer's name and key, e.g.
``monitoring.writers: influxdb.url: required key is missing``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer, ValidationError

from updraft.config import AbsolutePath, ConfigModel, TimeoutSeconds, dotted
from updraft.errors import ConfigError
from updraft.monitoring import registry
from updraft.monitoring.notifiers import registry as notifier_registry


def _explain(name: str, err: ValidationError) -> str:
    lines = []
    for problem in err.errors():
        key = dotted((name, *problem["loc"]))
        message = "required key is missing" if problem["type"] == "missing" else problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{key}: {message}")
    return "; ".join(lines)


def _sections(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, (list, tuple)):
        odd = next((i for i, n in enumerate(value) if not isinstance(n, str)), None)
        if odd is not None:  # not the value itself: a writer's settings may hold a token
            raise ValueError(
                f"expected writer names or a mapping of writer name to settings "
                f"(item [{odd}] is a {type(value[odd]).__name__}, not a name)"
            )
        if len(set(value)) != len(value):
            raise ValueError(f"a writer is listed twice: {list(value)}")
        return {name: {} for name in value}
    if isinstance(value, Mapping):
        return {str(name): ({} if section is None else section) for name, section in value.items()}
    raise ValueError(f"expected a mapping of writer name to settings (got {type(value).__name__})")


def validate_writers(value: object) -> Mapping[str, Any]:
    """Each writer's section validated by its own plugin, in the order given."""
    sections = _sections(value)
    validated: dict[str, Any] = {}
    for name, section in sections.items():
        try:
            found = registry.plugin(name)
        except ConfigError as err:
            raise ValueError(str(err)) from None
        missing = [r for r in found.requires if r not in validated]
        if missing:
            raise ValueError(f"{name} needs the {', '.join(missing)} writer(s), listed before it")
        try:
            validated[name] = found.settings.model_validate(section)
        except ValidationError as err:
            raise ValueError(_explain(name, err)) from None
        disagreements = found.agrees(validated[name], validated) if found.agrees else []
        if disagreements:
            raise ValueError("; ".join(disagreements))
    return MappingProxyType(validated)


def _dump(writers: Mapping[str, Any]) -> dict[str, Any]:
    return {name: settings.model_dump(mode="json") for name, settings in writers.items()}


Writers = Annotated[Any, BeforeValidator(validate_writers), PlainSerializer(_dump)]

_NOTIFIER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _notifier(name: object, section: object) -> Any:
    """One notifier's section, validated by the plugin its ``type`` names."""
    if not isinstance(name, str) or not _NOTIFIER_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r}: a notifier name is 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    if not isinstance(section, Mapping):
        raise ValueError(f"{name}: expected a mapping of settings with a type (got {type(section).__name__})")
    kind = section.get("type")
    if kind is None:
        known = notifier_registry.REGISTRY.available(notifier_registry.REGISTRY.names())
        raise ValueError(f"{name}.type: required key is missing ({known})")
    if not isinstance(kind, str):
        raise ValueError(f"{name}.type: expected a notifier type name (got {type(kind).__name__})")
    try:
        found = notifier_registry.plugin(kind)
    except ConfigError as err:
        raise ValueError(f"{name}.type: {err}") from None
    try:
        return found.settings.model_validate(section)
    except ValidationError as err:
        raise ValueError(_explain(name, err)) from None


def validate_notifiers(value: object) -> Mapping[str, Any]:
    """Each notifier's section validated by the plugin of its ``type``, in the order given."""
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping of notifier name to settings (got {type(value).__name__})")
    return MappingProxyType({str(name): _notifier(name, section) for name, section in value.items()})


def _dump_notifiers(notifiers: Mapping[str, Any]) -> dict[str, Any]:
    return {name: settings.model_dump(mode="json", by_alias=True) for name, settings in notifiers.items()}


Notifiers = Annotated[Any, BeforeValidator(validate_notifiers), PlainSerializer(_dump_notifiers)]


class MonitoringConfig(ConfigModel):
    """Where monitoring goes and which writers produce it."""

    dir: AbsolutePath = Path("/var/lib/updraft/monitoring")
    """Files of the file-based writers (json, rrd/, xml/, html/), named after the component."""
    writers: Writers = Field(default=("json",))
    """Writer name -> its settings (or a list of names, each with its defaults)."""
    deadline_seconds: TimeoutSeconds = 30.0
    """A writer still busy after this long is left to finish in the background; the cycle goes on."""
    notifiers: Notifiers = Field(default_factory=dict)
    """Notifier name -> its settings, ``type`` first (email, slack, mattermost): who is told of entry
    health changes (docs/notifications.md). A factory's only: a frontend's configuration refuses them
(`updraft.frontend.config.FrontendMonitoring`), it has no health changes to tell."""
