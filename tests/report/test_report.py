"""``mirdeck report``: the page's numbers come from the .INFO files (the real engine over tracks
with known answers), its charts are drawn from the data, and headless Chromium shows them."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from tests.support.export_dataset import BROKEN, CLIPPED
from tui.report import write_report
from tui.report.svg import BAR, histogram

QUIET = "Quiet Room - Near Silence"
TINY = "Tiny - Blip"


class Page(HTMLParser):
    """The parts of the page a test checks: bars, links, section texts, external references."""

    def __init__(self) -> None:
        super().__init__()
        self.rects: list[dict[str, str]] = []
        self.links: list[str] = []
        self.external: list[str] = []
        self.svgs = 0
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg":
            self.svgs += 1
        if tag == "rect":
            self.rects.append(a)
        if tag == "a":
            self.links.append(a.get("href", ""))
        for key in ("src", "href"):
            if re.match(r"^(https?:)?//", a.get(key) or ""):
                self.external.append(a[key])

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_a_histogram_counts_like_numpy():
    values = list(np.random.default_rng(3).normal(-14, 3, size=500))
    html = histogram(values, title="lufs", unit="LUFS", bins=20)
    counts = [int(c) for c in re.findall(r'data-count="(\d+)"', html)]
    expected, _ = np.histogram(values, bins=20, range=(min(values), max(values)))
    assert counts == list(expected)
    heights = [float(h) for h in re.findall(r'class="bar" x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"', html)]
    top = max(counts)
    assert heights[counts.index(top)] == pytest.approx(146.0)  # the tallest bar fills the plot
    assert all(h == pytest.approx(146.0 * c / top, abs=0.06) for h, c in zip(heights, counts))


def test_no_values_says_so_instead_of_drawing_an_empty_axis():
    assert "no values in this dataset" in histogram([], title="warmth")


def test_the_report_says_what_the_info_files_say(analysed, tmp_path):
    out = tmp_path / "report.html"
    stats = write_report(analysed, out)
    page = parse(out)
    text = " ".join(page.text)
    assert stats.tracks == 6 and stats.with_info == 5 and len(stats.broken) == 1
    assert stats.coverage["loudness"].done == 5 and stats.coverage["audiobox"].not_run == 6
    # Tiny - Blip is too short for the beat tracker and the classifiers: failures with their errors.
    assert {(t, m) for t, m, _ in stats.failures} == {(TINY, "rhythm"), (TINY, "essentia_tf")}
    assert "too short" in text and f"{BROKEN}.INFO: not valid JSON" in text
    assert [n for n, _ in stats.clipping] == [CLIPPED]
    assert [n for n, _ in stats.silent] == [QUIET] and stats.tempo_undefined == [QUIET]
    assert stats.keys == {"A minor": 2, "Eb major": 1, "A major": 1}
    assert sorted(round(b) for b in stats.values["bpm"]) == [120, 128, 187]
    assert page.external == []  # self-contained: nothing to fetch
    assert page.svgs >= 8
    assert any(link.endswith("Demo%20Band%20-%20Groove%20in%20A%20minor") for link in page.links)
    from urllib.parse import unquote

    for link in page.links:  # relative links that lead to the track folders and mixes
        assert (out.parent / unquote(link)).exists(), link


def test_coverage_counts_supplied_stems_as_there_and_stem_readers_without_stems_as_na(dataset, tmp_path):
    """Stems a folder supplies (nobody separated them: no provenance) count as there, as the
    engine counts them; harmonic reads bass or other stems: n/a where a track has neither."""
    import shutil

    from tui.run.dataset import scan

    groove = next(p for p in dataset.iterdir() if p.name.startswith("Demo Band - Groove"))
    full = next(groove.glob("full_mix.*"))
    for stem in ("vocals", "drums", "bass", "other"):
        shutil.copy(full, groove / f"{stem}{full.suffix}")
    tiny = dataset / "Tiny - Blip"
    shutil.copy(next(tiny.glob("full_mix.*")), tiny / f"bass{full.suffix}")  # one stem: not all four
    folders = scan(dataset).tracks
    assert {"vocals", "drums", "bass", "other"} <= set(next(t for t in folders if t.folder == groove).stems)
    stats = write_report(dataset, tmp_path / "report.html")
    assert stats.coverage["stems"].done == 1 and stats.coverage["stems"].not_run == stats.tracks - 1
    readers = sum(1 for t in folders if {"bass", "other"} & set(t.stems))
    assert readers == 2
    assert stats.coverage["harmonic"].not_applicable == stats.tracks - readers
    assert stats.coverage["harmonic"].not_run == readers


def test_the_command_writes_the_page(analysed, tmp_path):
    out = tmp_path / "r.html"
    done = subprocess.run([sys.executable, "-m", "tui.cli", "report", str(analysed), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "report of 6 tracks" in done.stdout and out.exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (bin/setup --test installs the "
                                             "Debian package chromium; it could not here)")
def test_headless_chromium_shows_the_charts(analysed, tmp_path):
    """The screenshot holds as many chart-blue pixels as the page's bars cover: the charts render,
    offline, as drawn."""
    from PIL import Image

    out = tmp_path / "report.html"
    write_report(analysed, out)
    shot = tmp_path / "shot.png"
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--force-device-scale-factor=1", "--window-size=1400,4000",
                           f"--screenshot={shot}", out.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.exists(), done.stderr[-2000:]
    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    blue = tuple(int(BAR[i:i + 2], 16) for i in (1, 3, 5))
    painted = int(np.all(np.abs(image - blue) <= 8, axis=2).sum())
    bars = [r for r in parse(out).rects if r.get("class") == "bar"]
    drawn = sum(float(r["width"]) * float(r["height"]) for r in bars)
    assert drawn > 5000
    assert painted == pytest.approx(drawn, rel=0.2)
