"""The report's one static HTML page: no server, no script, opens from disk."""
from __future__ import annotations

import html
import os
from typing import Sequence

from visionpipe.report.panels import Panel, Section

PAGE_FILE = "index.html"
_STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1250px}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:1.6em}
h3{font-size:1em;margin-bottom:.3em}table{border-collapse:collapse;font-size:.85em;margin:.3em 0}
td,th{border:1px solid #ccc;padding:2px 7px;text-align:left}th{background:#f1f1f1}
img{max-width:100%;margin:.2em .4em .2em 0;border:1px solid #eee}
.pair img{max-width:49%;vertical-align:top}
.note{font-size:.85em;color:#555;white-space:pre-wrap}nav a{margin-right:1em}
"""


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape("" if value is None else str(value))


def _panel(panel: Panel) -> str:
    parts = [f"<h3>{html.escape(panel.title)}</h3>"]
    if panel.note:
        parts.append(f'<div class="note">{html.escape(panel.note)}</div>')
    if panel.headers or panel.rows:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in panel.headers)
        body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
                       for row in panel.rows)
        parts.append(f"<table><tr>{head}</tr>{body}</table>")
    shown = "".join(f'<img src="{html.escape(image)}" alt="{html.escape(panel.title)}">'
                    for image in panel.images)
    if shown:  # several plots of a panel side by side (e.g. counts and normalised matrices)
        parts.append(f'<div class="{"pair" if len(panel.images) > 1 else "one"}">{shown}</div>')
    return "\n".join(parts)


def write_page(report_dir: str, title: str, sections: Sequence[Section]) -> str:
    """``<report_dir>/index.html`` with a link bar and one block per section."""
    anchors = [f"s{i}" for i in range(len(sections))]
    nav = " ".join(f'<a href="#{a}">{html.escape(s.title)}</a>' for a, s in zip(anchors, sections))
    blocks = [f'<h2 id="{a}">{html.escape(s.title)}</h2>\n' + "\n".join(_panel(p) for p in s.panels)
              for a, s in zip(anchors, sections)]
    text = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
            f"<nav>{nav}</nav>\n" + "\n".join(blocks) + "\n</body></html>\n")
    path = os.path.join(report_dir, PAGE_FILE)
    with open(path, "w") as f:
        f.write(text)
    return path
