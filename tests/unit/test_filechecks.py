"""check-config checks every file a config names, each with config file, key, path and reason."""

from __future__ import annotations

import typing
from pathlib import Path

from click.testing import CliRunner
from pydantic import BaseModel

from updraft.cli import main
from updraft.factory import gridtypes
from updraft.factory.config import FactoryConfig
from updraft.filechecks import _Reader, file_problems, named_files
from updraft.frontend.config import FrontendConfig
from updraft.monitoring import registry


def check_config(component: str, main_file: Path):
    return CliRunner().invoke(main, [component, "check-config", "-c", str(main_file)])


def test_a_missing_influxdb_token_file_fails_check_config_naming_file_and_key(tree, tmp_path):
    token = tmp_path / "influx.token"
    main_file = tree.factory(
        ("50-mon.yaml", f"monitoring: {{writers: {{json: {{}}, influxdb: {{token_file: {token}}}}}}}")
    )
    result = check_config("factory", main_file)
    assert result.exit_code == 1, result.output
    drop_in = main_file.parent / "factory.d" / "50-mon.yaml"
    assert f"{drop_in}: monitoring.writers.influxdb.token_file: {token}: no such file" in result.output
    token.write_text("secret-token\n")
    passed = check_config("factory", main_file)
    assert passed.exit_code == 0, passed.output
    assert "secret-token" not in passed.output


def test_every_unreadable_file_is_listed_at_once(tree, tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    main_file = tree.frontend(
        (
            "50-files.yaml",
            f"""\
            condor_config: {tmp_path / "condor_config"}
            staging: {{dir: {tmp_path / "www"}, url: "http://h/x", files: [{{source: {folder}}}]}}
            """,
        )
    )
    result = check_config("frontend", main_file)
    assert result.exit_code == 1
    drop_in = main_file.parent / "frontend.d" / "50-files.yaml"
    assert "(2 files cannot be read)" in result.output
    assert f"{drop_in}: condor_config: {tmp_path / 'condor_config'}: no such file" in result.output
    assert f"{drop_in}: staging.files[0].source: {folder}: is a directory, expected a file" in result.output


def test_files_the_schedd_reads_are_warnings_since_it_may_run_elsewhere(tree, tmp_path):
    keys = f"access_key_file: {tmp_path / 'id'}, secret_key_file: {tmp_path / 'secret'}"
    main_file = tree.factory(
        (
            "50-vm.yaml",
            f"entries: {{vm: {{grid_type: ec2, resource: https://ec2/, cloud: {{image: i, instance_type: t, {keys}}}}}}}",  # noqa: E501
        )
    )
    result = check_config("factory", main_file)
    assert result.exit_code == 0, result.output
    assert f"entries.vm.cloud.access_key_file: {tmp_path / 'id'}: no such file on this host" in result.output
    assert f"entries.vm.cloud.secret_key_file: {tmp_path / 'secret'}: no such file on this host" in result.output


def test_a_grid_type_key_is_reported_beside_the_entry_keys_not_under_grid(tree, tmp_path):
    auth = tmp_path / "gce.json"
    main_file = tree.factory(
        (
            "50-vm.yaml",
            f"entries: {{vm: {{grid_type: gce, resource: u p z, cloud: {{image: i, instance_type: t, auth_file: {auth}}}}}}}",  # noqa: E501
        )
    )
    from updraft.factory.config import load_factory_config

    problems = file_problems(load_factory_config(main_file).config)
    assert [(p.key, p.path, p.fatal) for p in problems] == [(("entries", "vm", "cloud", "auth_file"), auth, False)]


def _path_fields(model: type[BaseModel], seen: set[type]) -> list[tuple[str, object]]:
    """Every field holding a Path (at any depth of models), with its annotation and metadata."""
    if model in seen:
        return []
    seen.add(model)
    found: list[tuple[str, object]] = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if _mentions(annotation, Path):
            found.append((f"{model.__name__}.{name}", (annotation, tuple(info.metadata))))
        for inner in _models(annotation):
            found.extend(_path_fields(inner, seen))
    return found


def _mentions(annotation: object, kind: type) -> bool:
    return annotation is kind or any(_mentions(arg, kind) for arg in typing.get_args(annotation))


def _models(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _marked(annotation_and_metadata: object) -> bool:
    annotation, metadata = typing.cast(tuple[object, tuple[object, ...]], annotation_and_metadata)
    return any(isinstance(m, _Reader) for m in metadata) or "_Reader" in repr(annotation)


def test_every_file_a_config_names_is_marked_with_who_reads_it():
    """A new ``*_file`` key, or a file key of a plugin, cannot slip past check-config unmarked.
    Directories (created by Updraft) and paths on the workers are the only unmarked paths."""
    seen: set[type] = set()
    roots: list[type[BaseModel]] = [FactoryConfig, FrontendConfig]
    roots += [gridtypes.plugin(name).settings for name in gridtypes.BUILTIN]
    roots += [registry.plugin(name).settings for name in registry.names()]
    fields = [field for root in roots for field in _path_fields(root, seen)]
    unmarked = sorted(name for name, meta in fields if not _marked(meta))
    assert unmarked == [
        "CredentialSettings.store_dir",
        "FactoryConfig.work_dir",
        "FrontendConfig.work_dir",
        "FrontendMonitoring.dir",  # MonitoringConfig.dir, in a frontend's section
        "GlideinSettings.condor_dir",
        "GlideinSettings.node_scratch",
        "MonitoringConfig.dir",
        "StagingSettings.dir",
    ]
    marked = sorted(name for name, meta in fields if _marked(meta))
    assert "InfluxSettings.token_file" in marked and "PilotTokens.signing_key_file" in marked


def test_named_files_walks_into_writers_and_entries(tree, tmp_path):
    from updraft.factory.config import load_factory_config

    token = tmp_path / "t"
    main_file = tree.factory(("50-mon.yaml", f"monitoring: {{writers: {{influxdb: {{token_file: {token}}}}}}}"))
    keys = [key for key, _path, _reader in named_files(load_factory_config(main_file).config)]
    assert ("monitoring", "writers", "influxdb", "token_file") in keys
    assert ("pilot", "executable") in keys
