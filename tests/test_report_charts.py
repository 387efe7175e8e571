"""Charts inlined as SVG in a console page (reports/charts.py): pure, no server."""

from __future__ import annotations

import re
from collections import Counter

from reports import charts


def test_charts_inlined_in_one_page_share_no_id_and_each_has_a_name() -> None:
    points = [("ana", 2.0), ("lee", 1.0)]
    page = "".join(
        charts.svg(charts.bar_chart("Completed", points, [False, True]), f"chart-{n}", label)
        for n, label in (("a", "Completed per agent"), ("b", "Completed & flagged"))
    )
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert ids and [i for i, n in Counter(ids).items() if n > 1] == []
    refs = re.findall(r'(?:href="#|url\(#)([^")]+)', page)
    assert refs and set(refs) <= set(ids)  # every reference still finds its element
    assert "<?xml" not in page and "<!DOCTYPE" not in page
    assert '<svg role="img" aria-labelledby="chart-a-title"' in page
    assert '<title id="chart-b-title">Completed &amp; flagged</title>' in page
    assert "<dc:date>" not in page  # the same chart is the same text
    assert ">ana</text>" in page  # labels stay text (readable, searchable)
