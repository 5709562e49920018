"""parse_report: the factory's reading of a pilot's stdout."""

from __future__ import annotations

import dataclasses

import pytest

from updraft.glidein.report import REPORT_BEGIN, REPORT_END, STEPS, ValidationResult, parse_report

BODY = """\
report_version=1
status=failed
failed_step=validate
reason=1 validation(s) failed; first: f.sh network no route
factory=lab-factory
entry=site1
frontend=lab-vo
group=main
security_class=pilot
job_id=42.7
credential_id=lab-vo.main.token1
glidein_name=glidein_42_7_99@wn1
host=wn1
dry_run=0
start_time=1000
end_time=1060
lifetime=60
retire_time=
die_time=
retire_clamped=no
condor_exit=
validation.2=f.sh network no route = to host
validation.1=e.sh OK
validation.10=g.sh unknown exited 5 without an UPDRAFT_VALIDATION line
jobs_run=0
busy_seconds=0
future_key=value=with=equals
"""


def wrap(body: str) -> str:
    return f"{REPORT_BEGIN}\n{body}{REPORT_END}\n"


def test_parses_every_field() -> None:
    report = parse_report(wrap(BODY))
    assert report is not None
    assert (report.status, report.failed_step, report.ok) == ("failed", "validate", False)
    assert report.reason == "1 validation(s) failed; first: f.sh network no route"
    assert (report.factory, report.entry, report.frontend, report.group) == ("lab-factory", "site1", "lab-vo", "main")
    assert (report.job_id, report.credential_id, report.security_class) == ("42.7", "lab-vo.main.token1", "pilot")
    assert (report.start_time, report.end_time, report.lifetime) == (1000, 1060, 60)
    assert (report.retire_time, report.die_time, report.condor_exit) == (None, None, None)
    assert (report.dry_run, report.retire_clamped, report.report_version) == (False, False, 1)
    assert (report.jobs_run, report.busy_seconds) == (0, 0)
    assert report.validations == (
        ValidationResult("e.sh", "OK"),
        ValidationResult("f.sh", "network", "no route = to host"),
        ValidationResult("g.sh", "unknown", "exited 5 without an UPDRAFT_VALIDATION line"),
    )
    assert report.validations[0].ok and not report.validations[1].ok
    assert report.extra == (("future_key", "value=with=equals"),)


def test_report_is_frozen() -> None:
    report = parse_report(wrap(BODY))
    assert report is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.status = "ok"  # type: ignore[misc]


def test_tolerates_surrounding_output_and_crlf() -> None:
    text = "condor says hi\r\nsome banner\n" + wrap(BODY).replace("\n", "\r\n") + "trailing noise\n"
    report = parse_report(text)
    assert report is not None and report.entry == "site1"


def test_last_complete_report_wins() -> None:
    first = wrap(BODY)
    second = wrap(BODY.replace("status=failed", "status=ok").replace("failed_step=validate", "failed_step="))
    report = parse_report(first + "restart\n" + second + REPORT_BEGIN + "\nstatus=failed\n")
    assert report is not None and report.ok


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no report at all\n",
        BODY,
        f"{REPORT_BEGIN}\n{BODY}",  # cut short: no END
        f"{BODY}{REPORT_END}\n",  # END without BEGIN
        f"  {REPORT_BEGIN}\n{BODY}{REPORT_END}\n",  # marker not a whole line
        f"{REPORT_BEGIN} extra\n{BODY}{REPORT_END}\n",
        wrap(BODY.replace("status=failed", "status=maybe")),
        wrap(BODY.replace("status=failed\n", "")),
    ],
)
def test_strict_about_markers_and_status(text: str) -> None:
    assert parse_report(text) is None


def test_stray_lines_and_bad_numbers_inside_are_ignored() -> None:
    report = parse_report(wrap("status=ok\nnot a field\n=novalue\njobs_run=many\nstart_time=12\n"))
    assert report is not None
    assert (report.status, report.jobs_run, report.start_time, report.factory) == ("ok", 0, 12, "")


def test_version_2_fields_are_typed() -> None:
    body = (
        BODY.replace("report_version=1", "report_version=2").replace("validation.2=f.sh", "validation.2=frontend/f.sh")
        + "condor_source=tarball\nnodes=4\ncpus=16\nblackhole_jobs=3\nblackhole_window=900\n"
        "busy_core_seconds=7200\ngoodput_core_seconds=3600\n"
    )
    report = parse_report(wrap(body))
    assert report is not None and report.report_version == 2
    assert (report.condor_source, report.nodes, report.cpus) == ("tarball", 4, 16)
    assert (report.blackhole_jobs, report.blackhole_window) == (3, 900)
    assert (report.busy_core_seconds, report.goodput_core_seconds) == (7200, 3600)
    assert report.validations[1] == ValidationResult("frontend/f.sh", "network", "no route = to host")
    assert report.extra == (("future_key", "value=with=equals"),)


def test_version_1_report_gets_defaults_for_version_2_fields() -> None:
    report = parse_report(wrap(BODY))
    assert report is not None
    assert (report.nodes, report.cpus, report.condor_source) == (1, 0, "")
    assert (report.busy_core_seconds, report.goodput_core_seconds) == (0, 0)
    assert (report.blackhole_jobs, report.blackhole_window) == (0, 0)


def test_bad_numbers_in_version_2_fields_fall_back_to_defaults() -> None:
    report = parse_report(wrap("status=ok\nnodes=many\ncpus=\nbusy_core_seconds=1.5\n"))
    assert report is not None
    assert (report.nodes, report.cpus, report.busy_core_seconds) == (1, 0, 0)


def test_steps_include_install_and_blackhole_in_run_order() -> None:
    assert STEPS == ("args", "fetch", "verify", "validate", "install", "lifetime", "config", "condor", "blackhole")
