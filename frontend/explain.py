"""A decision's record in plain words, for logs, ``updraft frontend explain`` and bug reports.

The record (inputs, steps, bounds, notes) is already complete; this only
phrases it, so an operator can follow the arithmetic without reading the
policy's code. Unknown step names still print, generically, so a new step
in ``decide`` never disappears from an explanation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from updraft.frontend.model import Decision, DecisionInputs, EntryAd, Plan
from updraft.records import Step


def _num(value: float) -> str:
    """Whole numbers without a decimal point, fractions (from the equal split) with one."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


Phrase = Callable[[Step, DecisionInputs, "Step | None"], str]
"""Words for one step, given the decision's inputs and the step before it."""


def _need(step: Step, inputs: DecisionInputs, previous: Step | None) -> str:
    jobs, pilots = _num(inputs.idle_jobs), inputs.idle_pilots_needed
    usable, idle = _num(inputs.usable_idle_slots), _num(inputs.idle_slots)
    refused = (
        f" (not counted: {_num(inputs.refused_idle_jobs)} its idle pilots refuse)" if inputs.refused_idle_jobs else ""
    )
    return (
        f"{jobs} matching idle jobs{refused} = {pilots:.1f} pilots; "
        f"{usable} usable idle slots (of {idle}) -> need {_num(step.value)}"
    )


def _ramp(step: Step, inputs: DecisionInputs, previous: Step | None) -> str:
    """Names the need it divides, which the previous step holds."""
    need = _num(previous.value) if previous is not None and previous.name == "need" else "need"
    return f"need {need} / attenuation {_num(inputs.ramp_up_attenuation)} = {_num(step.value)}"


def _reserve(step: Step, inputs: DecisionInputs, previous: Step | None) -> str:
    old = inputs.old_idle_jobs
    if not old:
        return "+0 reserve (no old idle jobs)"
    pilots = inputs.old_idle_pilots
    return f"+{_num(step.value)} reserve for {_num(old)} old idle jobs ({pilots:.1f} pilots)"


def _request(step: Step, inputs: DecisionInputs, previous: Step | None) -> str:
    if step.note:
        return f"request {_num(step.value)}: {step.note}"
    return f"= {_num(step.value)} before limits"


_PHRASES: Mapping[str, Phrase] = {
    "need": _need,
    "ramp": _ramp,
    "reserve": _reserve,
    "request": _request,
    "cap": lambda step, _, __: f"capped at {_num(step.value)} by {step.note}",
    "curb": lambda step, _, __: f"halved to {_num(step.value)} by {step.note}",
    "zero": lambda step, _, __: f"zero by {step.note}",
    "scale": lambda step, _, __: f"scaled down to {_num(step.value)} by {step.note}",
    "hold": lambda step, _, __: f"held at {_num(step.value)}: {step.note}",
    "withdrawn": lambda step, _, __: f"withdrawn: {step.note}",
}


def _step_line(step: Step, inputs: DecisionInputs, previous: Step | None) -> str:
    phrase = _PHRASES.get(step.name)
    if phrase is None:
        return f"{step.name} = {_num(step.value)}" + (f" ({step.note})" if step.note else "")
    return phrase(step, inputs, previous)


def headline(decision: Decision) -> str:
    """One line: who, how many, the running cap and what gets removed."""
    removal = decision.remove.value
    if decision.remove_max:
        removal = f"{removal}, up to {decision.remove_max}"
    who = f"group {decision.group}, entry {decision.entry.key}"
    if decision.withdrawn:
        return f"{who}: no request (withdrawn; nothing submitted, nothing removed)"
    kept = f", kept: data incomplete since {decision.held_since:.0f}" if decision.held_since is not None else ""
    return f"{who}: requested {decision.idle} idle (max {decision.max_pilots} pilots, removal {removal}{kept})"


def explain(decision: Decision) -> str:
    """Every step of one decision, in order, then its notes and the limits that bound it."""
    lines = [headline(decision)]
    previous: Step | None = None
    for step in decision.steps:
        lines.append(f"  {_step_line(step, decision.inputs, previous)}")
        previous = step
    lines.extend(f"  note: {note}" for note in decision.notes)
    if decision.bound_by:
        lines.append(f"  bound by: {', '.join(decision.bound_by)}")
    return "\n".join(lines)


def why_no_request(entry: EntryAd) -> str:
    """For an entry without a decision that takes no pilots: why no demand goes there.

    Matching places no job on an entry in downtime or banned while another
    entry takes it, so such an entry often has no decision to explain.
    """
    if entry.in_downtime:
        why = "in downtime"
    elif entry.health is not None:
        why = entry.health.described()
    else:
        why = "taking no pilots"
    return f"entry {entry.key}: no request: {why}; idle jobs it would take go to other entries that match them"


def _compact(decision: Decision) -> str:
    bound = f" [{', '.join(decision.bound_by)}]" if decision.bound_by else ""
    removal = f", remove {decision.remove.value} <= {decision.remove_max}" if decision.remove_max else ""
    jobs = _num(decision.inputs.idle_jobs)
    who = f"{decision.group:<12} {decision.entry.key:<30}"
    state = " withdrawn" if decision.withdrawn else " kept" if decision.held_since is not None else ""
    return f"  {who} idle {decision.idle:>5} (jobs {jobs}){removal}{bound}{state}"


def explain_plan(plan: Plan) -> str:
    """A whole cycle at a glance: one line per decision, then what got no pilots and why."""
    total = sum(d.idle for d in plan.decisions)
    lines = [f"plan at {plan.now:.0f}: {len(plan.decisions)} decisions, {total} idle pilots requested"]
    lines.extend(_compact(decision) for decision in plan.decisions)
    for group in sorted(set(plan.unmatched) | set(plan.in_downtime)):
        unrunnable = plan.unrunnable.get(group, 0)
        why = f" ({unrunnable} of them: their own Requirements are false on every such entry's pilots)"
        lines.append(
            f"  group {group}: {plan.unmatched.get(group, 0)} idle jobs match no entry{why if unrunnable else ''}, "
            f"{plan.in_downtime.get(group, 0)} only entries in downtime or banned"
        )
    for problem in plan.problems:
        groups = f" (groups {', '.join(sorted(problem.groups))} incomplete)" if problem.groups else ""
        lines.append(f"  problem: {problem.source}: {problem.message}{groups}")
    return "\n".join(lines)
