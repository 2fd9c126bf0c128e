"""The report page: one HTML file with its styles and charts inline. A Content-Security-Policy
forbids every fetch, so the page shows the same offline as online and never calls home."""
from __future__ import annotations

import os
import time
from html import escape
from pathlib import Path
from urllib.parse import quote

from tui.report import svg
from tui.report.stats import AESTHETICS, DISTRIBUTIONS, TIMBRAL, DatasetStats, TrackRow, circle_order

TOP_LABELS = 15
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fff; }
h1 { font-size: 1.5em; margin: 0 0 .2em; }
h2 { font-size: 1.15em; margin: 1.4em 0 .5em; border-bottom: 1px solid #ddd; }
.meta { color: #666; } .n { color: #888; font-weight: normal; font-size: .85em; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
figure.chart { margin: 0; padding: 6px; border: 1px solid #e3e3e3; border-radius: 4px; }
figcaption { font-weight: 600; margin-bottom: 2px; }
svg text.tick { font-size: 10px; fill: #444; } svg text.axis { font-size: 11px; fill: #666; }
table { border-collapse: collapse; } td, th { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.cov { display: inline-flex; width: 240px; height: 12px; background: #eee; vertical-align: middle; }
.cov span { display: block; height: 100%; } .done { background: #4a9a5b; } .failed { background: #c8443c; }
.na { background: #bbb; } .empty { color: #888; font-style: italic; }
.counts span { margin-right: 1.5em; } .err { color: #a33; }
"""


def _href(target: Path, page: Path) -> str:
    return quote(os.path.relpath(target.resolve(), page.resolve().parent))


def _link(name: str, target: Path, page: Path) -> str:
    return f'<a href="{_href(target, page)}">{escape(name)}</a>'


def _num(v) -> str:
    if v is None:
        return ""
    return f"{v:.1f}" if isinstance(v, float) else escape(str(v))


def _coverage(stats: DatasetStats) -> str:
    if not stats.coverage:
        return '<p class="empty">no modules known</p>'
    rows = ["<table><tr><th>module</th><th>done</th><th>failed</th><th>n/a</th><th>not run</th><th></th></tr>"]
    for name, c in stats.coverage.items():
        total = max(1, c.done + c.failed + c.not_applicable + c.not_run)
        bar = "".join(f'<span class="{cls}" style="width:{100 * n / total:.1f}%"></span>'
                      for cls, n in (("done", c.done), ("failed", c.failed), ("na", c.not_applicable)) if n)
        rows.append(f"<tr><td>{escape(name)}</td><td class=num>{c.done}</td><td class=num>{c.failed}</td>"
                    f"<td class=num>{c.not_applicable}</td><td class=num>{c.not_run}</td>"
                    f'<td><span class="cov">{bar}</span></td></tr>')
    return "".join(rows) + "</table>"


def _track_list(items: list[tuple[str, str]], stats: DatasetStats, page: Path) -> str:
    if not items:
        return '<p class="empty">none</p>'
    folders = stats.folders
    return "<ul>" + "".join(f"<li>{_link(name, folders[name], page)} {escape(detail)}</li>"
                            for name, detail in items) + "</ul>"


def track_row(r: TrackRow, page: Path) -> str:
    v = r.values
    return (f"<tr><td>{_link(r.name, r.folder, page)}</td><td class=num>{_num(v['duration_seconds'])}</td>"
            f"<td class=num>{_num(v['lufs'])}</td><td class=num>{_num(v['lra'])}</td>"
            f"<td class=num>{_num(v['bpm'])}</td><td>{_num(v['key'])}</td><td>{_num(v['genre'])}</td>"
            f"<td>{_num(v['mood'])}</td><td>{_link(r.audio.name, r.audio, page)}</td></tr>")


TABLE_MARK = "<!--tracks-->"


def render(stats: DatasetStats, page: Path) -> str:
    """The page; the rows of the track table are ``stats.rows`` or, when the report streams them,
    go where ``TABLE_MARK`` stands."""
    h = ['<!doctype html><html lang="en"><head><meta charset="utf-8">',
         "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
         "img-src data:\">",
         f"<title>mirdeck report: {escape(stats.root.resolve().name)}</title><style>{STYLE}</style></head><body>",
         f"<h1>{escape(stats.root.resolve().name)}</h1>",
         f'<p class="meta">{escape(str(stats.root.resolve()))} · {time.strftime("%Y-%m-%d %H:%M")}</p>',
         '<p class="counts">'
         f"<span><b>{stats.tracks}</b> tracks</span><span><b>{stats.with_info}</b> with a .INFO</span>"
         f"<span><b>{len(stats.broken)}</b> unreadable .INFO</span>"
         f"<span><b>{len({t for t, _, _ in stats.failures})}</b> tracks with a failed module</span></p>"]
    h.append("<h2>Coverage per module</h2>" + _coverage(stats))
    h.append('<h2>Distributions</h2><div class="grid">')
    for key, (title, unit) in DISTRIBUTIONS.items():
        h.append(svg.histogram(stats.values[key], title=title, unit=unit))
    order = circle_order()
    h.append(svg.bars([(k, stats.keys.get(k, 0)) for k in order], title="key (circle of fifths)"))
    h.append("</div>")
    h.append('<h2>Timbre</h2><div class="grid">')
    h.extend(svg.histogram(stats.values[k], title=k, unit="score") for k in TIMBRAL)
    h.append('</div><h2>Aesthetics</h2><div class="grid">')
    h.extend(svg.histogram(stats.values[k], title=k.replace("_", " "), unit="score") for k in AESTHETICS)
    h.append('</div><h2>Top labels</h2><div class="grid">')
    for head, counter in stats.labels.items():
        h.append(svg.bars(counter.most_common(TOP_LABELS), title=f"top {head}s"))
    h.append("</div><h2>Outliers</h2>")
    h.append(f"<h3>clipping (more than {1e-4:g} of samples at full scale)</h3>"
             + _track_list([(n, f"{r:.2%}") for n, r in stats.clipping], stats, page))
    h.append("<h3>near silence (below -60 LUFS)</h3>"
             + _track_list([(n, f"{v:.1f} LUFS") for n, v in stats.silent], stats, page))
    h.append("<h3>tempo undefined</h3>" + _track_list([(n, "") for n in stats.tempo_undefined], stats, page))
    h.append("<h2>Failures</h2>")
    if stats.failures or stats.broken:
        folders = stats.folders
        h.append("<table><tr><th>track</th><th>module</th><th>error</th></tr>")
        h.extend(f"<tr><td>{_link(t, folders[t], page)}</td><td>{escape(m)}</td><td class=err>{escape(e)}</td></tr>"
                 for t, m, e in stats.failures)
        h.extend(f"<tr><td colspan=2>.INFO</td><td class=err>{escape(p)}</td></tr>" for p in stats.broken)
        h.append("</table>")
    else:
        h.append('<p class="empty">none</p>')
    h.append("<h2>Tracks</h2><table><tr><th>track</th><th>duration s</th><th>LUFS</th><th>LRA</th><th>BPM</th>"
             "<th>key</th><th>genre</th><th>mood</th><th>audio</th></tr>")
    h.extend(track_row(r, page) for r in stats.rows)
    if not stats.keep_rows:
        h.append(TABLE_MARK)
    h.append("</table></body></html>\n")
    return "".join(h)
