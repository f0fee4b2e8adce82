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
    sink = report.newest_sink_results(newest)
    expected = report.render(json.loads(newest.read_text()), report.source_id(newest),
                             json.loads(sink.read_text()) if sink else None, report.source_id(sink) if sink else None)
    assert report.DOC.read_text() == expected, (
        f"docs/performance.md is stale relative to bench/results/{newest.name}"
        + (f" and sink/{sink.name}" if sink else "") + ": run `make bench-docs`")


def test_the_sink_section_comes_from_the_newer_of_the_full_run_and_a_sink_run(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "SINK_RESULTS", tmp_path / "sink")
    (tmp_path / "sink").mkdir()
    full = tmp_path / "2026-12-01.json"
    full.write_text(json.dumps({"started_at": "2026-12-01T08:00:00+0000", "sink": {}}))
    assert report.newest_sink_results(full) is None, "no sink run: the full run's own section"
    (tmp_path / "sink" / "2026-11-30.json").write_text(json.dumps({"started_at": "2026-11-30T08:00:00+0000"}))
    assert report.newest_sink_results(full) is None, "an older sink run gives way to the full run's section"
    (tmp_path / "sink" / "2026-12-02.json").write_text(json.dumps({"started_at": "2026-12-02T08:00:00+0000"}))
    assert report.newest_sink_results(full).name == "2026-12-02.json"
    full.write_text(json.dumps({"started_at": "2026-12-01T08:00:00+0000"}))
    (tmp_path / "sink" / "2026-12-02.json").unlink()
    assert report.newest_sink_results(full).name == "2026-11-30.json", "a full run without one: the newest sink run"


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
