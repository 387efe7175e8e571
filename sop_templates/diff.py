"""What changed between two versions of an SOP template, step by step (pure).

A text diff of two YAML files tells an SOP owner which lines moved; this tells them what a
case will do differently: a step added, a queue or an SLA changed, a threshold lowered, a
reason code dropped. Steps are matched by id, not by position, so reordering the document
changes nothing. Each change is `{path, change, before, after}` with `change` one of
added, removed, changed; paths read like `steps.triage.sla.budget` or
`parameters.approval_threshold`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

from sop_templates.schema import SopTemplate

ChangeKind = Literal["added", "removed", "changed"]
# Every version differs in its number, and steps are compared one by one below.
_NOT_COMPARED = ("name", "version", "steps")
_MARKS: dict[str, str] = {"added": "+", "removed": "-", "changed": "~"}


@dataclass(frozen=True)
class Change:
    path: str
    change: ChangeKind
    before: Any = None
    after: Any = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def diff_templates(before: SopTemplate, after: SopTemplate) -> list[Change]:
    """Top-level fields (start, parameters, reason codes, ...) first, then the steps."""
    old = before.model_dump(mode="json", exclude=set(_NOT_COMPARED))
    new = after.model_dump(mode="json", exclude=set(_NOT_COMPARED))
    return [*_diff_value("", old, new), *_diff_steps(before, after)]


def diff_documents(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """Any two versions of a document compared field by field (the escalation matrix)."""
    return list(_diff_value("", before, after))


def _diff_steps(before: SopTemplate, after: SopTemplate) -> Iterator[Change]:
    old = {s.id: s.model_dump(mode="json", exclude={"id"}) for s in before.steps}
    new = {s.id: s.model_dump(mode="json", exclude={"id"}) for s in after.steps}
    for step_id, step in new.items():
        yield from _diff_value(f"steps.{step_id}", old.get(step_id), step)
    for step_id, step in old.items():
        if step_id not in new:
            yield Change(f"steps.{step_id}", "removed", before=step)


def _diff_value(path: str, before: Any, after: Any) -> Iterator[Change]:
    if before == after:
        return
    if before is None:
        yield Change(path, "added", after=after)
    elif after is None:
        yield Change(path, "removed", before=before)
    elif isinstance(before, dict) and isinstance(after, dict):
        for key in [*before, *(k for k in after if k not in before)]:
            yield from _diff_value(_join(path, key), before.get(key), after.get(key))
    elif isinstance(before, list) and isinstance(after, list):
        yield from _diff_list(path, before, after)
    else:
        yield Change(path, "changed", before, after)


def _diff_list(path: str, before: list[Any], after: list[Any]) -> Iterator[Change]:
    if not all(_is_scalar(v) for v in [*before, *after]):
        # Ordered structures (decision branches): position matters, compare item by item.
        for i in range(max(len(before), len(after))):
            yield from _diff_value(f"{path}[{i}]", _at(before, i), _at(after, i))
        return
    # Lists of names (outcomes, reason codes): say which ones came and went.
    removed = [v for v in before if v not in after]
    added = [v for v in after if v not in before]
    yield from (Change(path, "removed", before=v) for v in removed)
    yield from (Change(path, "added", after=v) for v in added)
    if not removed and not added:
        yield Change(path, "changed", before, after)  # same members, new order


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def _at(items: list[Any], index: int) -> Any:
    return items[index] if index < len(items) else None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def render_text(changes: list[Change], name: str, before: int, after: int) -> str:
    """The diff as lines for a terminal: `+` added, `-` removed, `~` changed."""
    count = f"{len(changes)} change{'' if len(changes) == 1 else 's'}"
    lines = [f"{name} v{before} -> v{after}: {count if changes else 'no differences'}"]
    lines.extend(_line(c) for c in changes)
    return "\n".join(lines)


def _line(change: Change) -> str:
    if change.change == "changed":
        detail = f"{_show(change.before)} -> {_show(change.after)}"
    else:
        detail = _show(change.after if change.change == "added" else change.before)
    return f"  {_MARKS[change.change]} {change.path}: {detail}"


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
