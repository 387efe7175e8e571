"""Each vendor's service targets and time zone (targets.yaml): the QBR scorecard's RAG
and the periods of its reviews."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TARGETS_FILE = Path(__file__).with_name("targets.yaml")


class TargetsError(ValueError):
    """A targets file that does not read as targets."""


def targets_for(vendor: str, path: Path = TARGETS_FILE) -> dict[str, Any]:
    """The vendor's targets: the defaults with the vendor's own values over them."""
    try:
        doc = yaml.safe_load(path.read_text())
        merged = {**doc["default"], **(doc.get("vendors") or {}).get(vendor, {})}
        merged["amber_band"] = float(doc.get("amber_band", 0.1))
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise TargetsError(f"targets: {path} does not read as targets ({exc})") from None
    return merged
