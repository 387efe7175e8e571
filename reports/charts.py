"""Bar charts of report measures, drawn by matplotlib: PNG for the QBR pack, inline SVG for
the console's reports page. One look for both, so a chart reads the same everywhere."""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

Points = Sequence[tuple[str, float | None]]
BAR = "#1565c0"
FLAGGED = "#c62828"
# matplotlib names its SVG elements figure_1, patch_1...: the same in every chart, so
# charts inlined in one page would share ids. Each gets its own prefix instead.
_SVG_ID = re.compile(r'(id="|href="#|url\(#)([^")]+)')


def bars(ax: Any, title: str, points: Points, flagged: Sequence[bool] = ()) -> None:
    """One measure per label; a label without a value shows as zero, a flagged one in red
    and hatched (not by colour alone)."""
    labels = [label for label, _ in points]
    values = [v if v is not None else 0 for _, v in points]
    drawn = ax.bar(labels, values, color=BAR)
    for bar, flag in zip(drawn, flagged, strict=False):
        if flag:
            bar.set_facecolor(FLAGGED)
            bar.set_edgecolor("#ffffff")  # the hatch's colour
            bar.set_hatch("//")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    # From zero up, even when every value is zero (matplotlib would centre the axis on it);
    # counts (ints, not a rate that happens to be 1.0) get whole-number ticks.
    ax.set_ylim(bottom=0, top=None if any(values) else 1)
    if all(isinstance(v, int) for v in values):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if len(labels) > 6 or any(len(label) > 8 for label in labels):
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)


def bar_chart(
    title: str, points: Points, flagged: Sequence[bool] = (), size: tuple[float, float] = (6, 2.6)
) -> Figure:
    fig = Figure(figsize=size)
    bars(fig.add_subplot(), title, points, flagged)
    fig.tight_layout()
    return fig


def png(fig: Figure) -> str:
    """The chart as base64 PNG (for an <img> data URL)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode()


def svg(fig: Figure, chart_id: str, label: str) -> str:
    """The chart as an <svg> element to inline in HTML: text kept as text, no date in its
    metadata, ids prefixed with `chart_id`, and an accessible name (`label`)."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": chart_id}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # no XML declaration or DOCTYPE inside HTML
    text = _SVG_ID.sub(lambda m: f"{m.group(1)}{chart_id}-{m.group(2)}", text)
    title = f'<title id="{chart_id}-title">{html.escape(label)}</title>'
    opening = f'<svg role="img" aria-labelledby="{chart_id}-title" class="chart"'
    return text.replace("<svg", opening, 1).replace(">", ">" + title, 1)
