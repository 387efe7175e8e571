"""The evidence bundle for one case: files an auditor can keep, each with its SHA-256."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHistory

from audit.runs import runs_json
from audit.timeline import TimelineEntry, render
from domain.case_models import CaseSnapshot
from store.tables import SopVersionRow


def write_bundle(
    out_dir: Path,
    case: CaseSnapshot,
    runs: Sequence[WorkflowHistory],
    entries: list[TimelineEntry],
    sop: SopVersionRow | None,
) -> Path:
    """Write history, timeline, SOP content and a manifest of hashes under out_dir/<case id>."""
    folder = out_dir / case.id
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "history.json": runs_json(runs),  # every run of the case
        "timeline.json": json.dumps([e.model_dump(mode="json") for e in entries], indent=2),
        "timeline.txt": render(case, entries) + "\n",
        "case.json": case.model_dump_json(indent=2),
    }
    if sop is not None:
        files["sop.json"] = json.dumps(sop.content, indent=2, sort_keys=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    manifest: dict[str, Any] = {
        "case_id": case.id,
        "sop": {
            "name": case.sop.name,
            "version": case.sop.version,
            "content_hash": case.sop.content_hash,
            "registry_hash_matches": sop is not None and sop.content_hash == case.sop.content_hash,
        },
        "files": {name: hashlib.sha256(text.encode()).hexdigest() for name, text in files.items()},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder
