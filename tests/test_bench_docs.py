"""docs/performance.md and its plot are what the newest bench/results file renders to.

Only the generator runs here (no bench, no server, no TensorFlow): a stale page
means someone committed results without `make bench-docs`, or changed the
generator without regenerating.
"""
from __future__ import annotations

import json

from bench import report


def test_performance_doc_is_rendered_from_the_newest_results():
    newest = report.newest_results()
    expected = report.render(json.loads(newest.read_text()), report.source_id(newest))
    assert report.DOC.read_text() == expected, (
        f"docs/performance.md is stale relative to bench/results/{newest.name}: run `make bench-docs`")


def test_plot_was_drawn_from_the_newest_results():
    newest = report.newest_results()
    drawn_from = report.png_text(report.PLOT).get(report.PLOT_KEY)
    assert drawn_from == report.source_id(newest), (
        f"docs/performance.png was drawn from {drawn_from!r}, not {report.source_id(newest)!r}: "
        "run `make bench-docs`")


def test_newest_means_latest_start_not_latest_name(tmp_path):
    (tmp_path / "2026-11-30-quick.json").write_text(json.dumps({"started_at": "2026-11-30T09:00:00+0000"}))
    (tmp_path / "2026-12-01.json").write_text(json.dumps({"started_at": "2026-12-01T08:00:00+0000"}))
    (tmp_path / "2026-12-02-quick.json").write_text(json.dumps({"started_at": "2026-11-29T08:00:00+0000"}))
    assert report.newest_results(tmp_path).name == "2026-12-01.json"


def test_memory_doc_is_rendered_from_its_results():
    from bench import memory

    assert memory.DOC.read_text() == memory.render(json.loads(memory.RESULTS.read_text())), (
        "docs/memory.md is stale relative to bench/results/memory/latest.json: run `make bench-memory`")
