"""From raw measurements to the figures that are reported, and the targets met or not.

Ratios are paired: a configuration's fit is divided by the no-tracking fit of
the same set (same process, minutes apart), so machine drift between sets
cancels. Medians with [min-max] over sets.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any, Iterable

from .configs import BY_NAME, CONFIGS, SINK_CONFIGS

RUNTIME_CONFIGS = ("runtime-epoch", "runtime-step50", "runtime-step1")


def spread(values: Iterable[float | None]) -> dict[str, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _med(values: Iterable[float | None]) -> float | None:
    found = spread(values)
    return found["median"] if found else None


def overhead(sets: list[dict[str, Any]], configs: Iterable = CONFIGS) -> dict[str, dict[str, Any]]:
    by_config: dict[str, list[tuple[dict, dict | None]]] = defaultdict(list)
    for one in sets:
        none = next((f for f in one["fits"] if f["config"] == "none" and not f["error"]), None)
        for fit in one["fits"]:
            by_config[fit["config"]].append((fit, none))
    rows = {}
    for config in configs:
        pairs = by_config.get(config.name, [])
        ok = [(f, n) for f, n in pairs if not f["error"]]
        fits = [f for f, _ in ok]
        with_none = [(f, n) for f, n in ok if n is not None]

        def per_point(key: str, minus_none: bool = False) -> float | None:
            values = []
            for f, n in with_none:
                if f.get("points_expected") and f.get(key) is not None:
                    value = f[key] - (n[key] if minus_none else 0.0)
                    values.append(1e6 * value / f["points_expected"])
            return _med(values)

        rows[config.name] = {
            "label": config.label, "family": config.family, "n": len(fits),
            "errors": [f["error"] for f, _ in pairs if f["error"]],
            "fit_s": spread(f["fit_s"] for f in fits),
            "fit_vs_none": spread(f["fit_s"] / n["fit_s"] for f, n in with_none),
            "run_total_s": spread(f["run_total_s"] for f in fits),
            "run_total_vs_none": spread(f["run_total_s"] / n["run_total_s"] for f, n in with_none),
            "hook_us_per_step": spread(f["hook_us_per_step"] for f in fits),
            "hook_ms_per_fit": spread(1000 * f["hook_s"] for f in fits),
            "dispatch_us_per_step": spread(f["dispatch_us_per_step"] for f in fits),
            "end_of_run_s": spread(f["end_of_run_s"] for f in fits),
            "setup_s": spread(f.get("setup_s") for f in fits),
            "client_cpu_s": spread(f["client_cpu_s"] for f in fits),
            "extra_client_cpu_us_per_point": per_point("client_cpu_s", minus_none=True),
            "background_cpu_s": spread(f["background_cpu_s"] for f in fits),
            "background_us_per_point": per_point("background_cpu_s"),
            "server_cpu_s": spread(f["server_cpu_s"] for f in fits),
            "server_us_per_point": per_point("server_cpu_s", minus_none=True),
            "points_present": sum(f.get("points_present") or 0 for f in fits),
            "points_expected": (sum(f["points_expected"] for f in fits)
                                if fits and fits[0].get("points_expected") is not None else None),
            "duplicates": sum((f.get("points_raw") or 0) - (f.get("points_present") or 0) for f in fits),
            "fluent_us_per_call": spread(f.get("fluent_us_per_call") for f in fits),
        }
    return rows


def sink(raw: dict[str, Any] | None) -> dict[str, Any]:
    """The sink section: every client's cost with the server taken out, and one MLflow server's intake."""
    if not raw:
        return {}
    rows = overhead(raw.get("sets", []), SINK_CONFIGS)
    sizing = (raw.get("sizing") or {}).get("rows") or []
    none = rows.get("none") or {}
    # What one every-step trainer of this workload asks a server to take: 8 points per step at the no-tracking
    # fit's pace (the fastest a trainer runs); how many of them one server keeps up with at its best batch.
    steps = next((f["steps"] for one in raw.get("sets", []) for f in one["fits"] if f["config"] == "none"), None)
    fit_s = _m(none, "fit_s")
    demand = None if not steps or not fit_s else 8 * steps / fit_s
    best = max(sizing, key=lambda r: r["points_per_s"], default=None)
    return {"rows": rows, "sizing": sizing, "sizing_points": (raw.get("sizing") or {}).get("points_per_row"),
            "unknown_calls": (raw.get("sink") or {}).get("unknown") or {},
            "trainer_points_per_s": demand, "best_sizing": best,
            "trainers_per_server": None if not demand or best is None else best["points_per_s"] / demand}


def outages(fits: list[dict[str, Any]], healthy: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for fit in sorted(fits, key=lambda f: (f["scenario"], f["delay"], f["config"])):
        expected, present = fit.get("points_expected"), fit.get("points_present")
        healthy_end = (healthy.get(fit["config"], {}).get("end_of_run_s") or {}).get("median")
        status = fit.get("runtime_status") or {}
        in_spool = (status.get("logging") or {}).get("pending") or 0
        rows.append({
            "scenario": fit["scenario"], "delay": fit["delay"], "config": fit["config"],
            "label": BY_NAME[fit["config"]].label, "error": fit.get("error"),
            "outage_s": fit.get("outage_s"), "healed_before_fit_end": fit.get("healed_before_fit_end"),
            "epochs": fit.get("epochs"), "fit_s": fit["fit_s"],
            "stall_s": fit.get("stall_s"), "max_gap_s": fit.get("max_gap_s"),
            "end_of_run_s": fit["end_of_run_s"],
            "extra_end_of_run_s": None if healthy_end is None else fit["end_of_run_s"] - healthy_end,
            "points_expected": expected, "points_present": present,
            # what the runtime's spool kept (a degraded close, replayable) is not lost; system/* points
            # counted before count_points skipped them would make this negative
            "points_in_spool": in_spool,
            "points_lost": None if expected is None or present is None else max(0, expected - present - in_spool),
            "duplicates": (fit.get("points_raw") or 0) - (present or 0),
            "runtime_logging": status.get("logging"),
            "pending_at_fit_end": fit.get("pending_at_fit_end"),
        })
    return rows


def startup(raw: dict[str, Any]) -> dict[str, Any]:
    imports = raw.get("import", {}).get("seconds") or []
    preflight = (raw.get("preflight") or {}).get("seconds") or []
    cli = raw.get("import_cli") or {}
    return {"import_ms": spread(1000 * s for s in imports),
            "import_heavy_modules": raw.get("import", {}).get("heavy_modules"),
            "import_cli_ms": spread(1000 * s for s in cli.get("seconds") or []),
            "import_cli_heavy_modules": cli.get("heavy_modules"),
            "preflight_ms": spread(1000 * s for s in preflight),
            "cold": raw.get("cold"), "share": raw.get("share")}


def _target(name: str, owner: str, threshold: str, value: float | None, limit: float, fmt: str,
            note: str = "") -> dict[str, Any]:
    return {"target": name, "owner": owner, "threshold": threshold,
            "value": None if value is None else fmt.format(value),
            "met": None if value is None else value <= limit, "note": note}


def targets(over: dict[str, dict], outage_rows: list[dict], start: dict, image: dict,
            sunk: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    step1 = over.get("runtime-step1", {})
    hook = (step1.get("hook_us_per_step") or {}).get("median")
    background = step1.get("background_us_per_point")
    healthy_ends = [((over.get(c) or {}).get("end_of_run_s") or {}).get("median") for c in RUNTIME_CONFIGS]
    healthy_end = max((e for e in healthy_ends if e is not None), default=None)
    healed_rows = [r for r in outage_rows if r["config"] in RUNTIME_CONFIGS and r["healed_before_fit_end"]]
    healed = [r["end_of_run_s"] for r in healed_rows]
    healed_default = [r["end_of_run_s"] for r in healed_rows if r["config"] == "runtime-epoch"]
    worst = max(healed_rows, key=lambda r: r["end_of_run_s"], default=None)
    backlog_note = ""
    if worst is not None and worst["end_of_run_s"] > 2.0 and worst.get("pending_at_fit_end"):
        sent = worst["pending_at_fit_end"] - (worst.get("points_in_spool") or 0)
        pace = f"at {sent / worst['end_of_run_s']:,.0f} points/s (the server's pace on these cores)"
        backlog_note = (f"{worst['label']}: {worst['pending_at_fit_end']:,} points were still pending when fit "
                        + (f"returned; the close sent {sent:,} {pace}, the rest stayed in the spool"
                           if worst.get("points_in_spool") else f"returned, sent {pace}"))
    cold = start.get("cold") or {}
    preflight_ms = (start.get("preflight_ms") or {}).get("median")
    found = [
        _target("hook time per step, training thread (runtime every step)", "runtime logging (lead)", "≤ 10 µs",
                hook, 10, "{:.1f} µs"),
        _target("background client CPU per logged point (runtime every step)", "runtime logging (lead)", "≤ 25 µs",
                background, 25, "{:.0f} µs"),
    ]
    found += [
        _target("end of run, healthy server (slowest runtime configuration, median)", "end of run (issue 8)", "≤ 0.2 s",
                healthy_end, 0.2, "{:.2f} s"),
        _target("end of run after an outage that healed before fit returned (worst)", "end of run (issue 8)",
                "≤ 2 s", max(healed) if healed else None, 2.0, "{:.1f} s",
                backlog_note if healed else "no runtime outage healed before its fit ended"),
        _target("… the same, per-epoch logging (the default)", "end of run (issue 8)",
                "≤ 2 s", max(healed_default) if healed_default else None, 2.0, "{:.1f} s",
                "" if healed_default else "no per-epoch outage healed before its fit ended"),
        _target("preflight, warm server (run_tracked called → train entered)", "runtime start-up (issue 12)",
                "≤ 0.2 s", None if preflight_ms is None else preflight_ms / 1000, 0.2, "{:.3f} s"),
        _target("first training step after a cold server turns healthy", "runtime start-up (issue 12)", "≤ 1.5 s",
                cold.get("healthy_to_first_step_begin_s"), 1.5, "{:.2f} s",
                "" if cold.get("healthy_to_first_step_begin_s") is not None else "cold start not measured"),
        _target("import trainer_runtime (fresh interpreter)", "runtime start-up (issue 12)", "≤ 100 ms",
                (start.get("import_ms") or {}).get("median"), 100, "{:.1f} ms"),
    ]
    found += sink_targets(sunk or {})
    added = image.get("added_bytes") / 1e6 if image.get("measured") else None
    found.append(_target("the runtime's layer over the base image", "image (issue 12)", "≤ 150 MB", added, 150,
                         "{:.0f} MB", "" if added is not None else image.get("why", "not measured")))
    return found


SINK_OWNER = "runtime logging (issue 21)"


def sink_targets(sunk: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 21's targets, measured against the null sink: what the client costs, MLflow's figure beside."""
    rows = sunk.get("rows") or {}
    if not rows:
        return [_target("against a null sink: the runtime's every-step run total vs no tracking", SINK_OWNER,
                        "≤ 1.05×", None, 1.05, "{:.2f}×", "the sink section was not run")]

    def med(config: str, key: str) -> float | None:
        return _m(rows.get(config) or {}, key)

    def beside(config: str, key: str, fmt: str) -> str:
        value = med(config, key)
        return f"{BY_NAME[config].label}: {'—' if value is None else fmt.format(value)}"

    return [
        _target("against a null sink: run total vs no tracking, every-step logging (runtime every step)",
                SINK_OWNER, "≤ 1.05×", med("runtime-step1", "run_total_vs_none"), 1.05, "{:.2f}×",
                beside("mlflow-step", "run_total_vs_none", "{:.2f}×")),
        _target("against a null sink: run total vs no tracking, per-epoch logging (the default)", SINK_OWNER,
                "within noise (≤ 1.01×)", med("runtime-epoch", "run_total_vs_none"), 1.01, "{:.3f}×",
                beside("mlflow-epoch", "run_total_vs_none", "{:.3f}×")),
        _target("against a null sink: hook time per step, training thread (runtime every step)", SINK_OWNER,
                "≤ 10 µs", med("runtime-step1", "hook_us_per_step"), 10, "{:.1f} µs",
                beside("mlflow-step", "hook_us_per_step", "{:.1f} µs")),
        _target("against a null sink: a routed fluent `mlflow.log_metric`, per call on the training thread",
                SINK_OWNER, "≤ 20 µs", med("runtime-fluent-step", "fluent_us_per_call"), 20, "{:.1f} µs",
                "; ".join([beside("mlflow-fluent-step", "fluent_us_per_call", "{:.0f} µs"),
                           beside("mlflow-fluent-async-step", "fluent_us_per_call", "{:.0f} µs")])),
    ]


def _server_note(row: dict[str, Any], none: dict[str, Any]) -> str:
    """Who spends the CPU of every-step logging, when the server shares the training's cores."""
    server, per_point = _m(row, "server_cpu_s"), row.get("server_us_per_point")
    client, none_cpu, none_fit = _m(row, "client_cpu_s"), _m(none, "client_cpu_s"), _m(none, "fit_s")
    if None in (server, per_point, client, none_cpu, none_fit):
        return ""
    return (f"the MLflow server spent {server:.2f} s of CPU per fit storing its points ({per_point:.0f} µs "
            f"each, in MLflow's SQLAlchemy store) on the cores training uses; the no-tracking fit itself uses "
            f"{none_cpu:.2f} s of CPU in {none_fit:.2f} s; the runtime's own extra client CPU is "
            f"{client - none_cpu:.2f} s per fit")


def _fixed_cost_note(row: dict[str, Any], none: dict[str, Any]) -> str:
    """A run's fixed costs against a short fit: the preflight's and the close's round trips."""
    setup, end, none_fit = _m(row, "setup_s"), _m(row, "end_of_run_s"), _m(none, "fit_s")
    if None in (setup, end, none_fit):
        return ""
    return (f"fixed costs per run: preflight {1000 * setup:.0f} ms + end of run {1000 * end:.0f} ms = "
            f"{100 * (setup + end) / none_fit:.1f} % of the {none_fit:.2f} s no-tracking fit")


def _m(row: dict[str, Any], key: str) -> float | None:
    return (row.get(key) or {}).get("median")


def summarize(results: dict[str, Any], sink_results: dict[str, Any] | None = None) -> dict[str, Any]:
    """``sink_results``: the run the sink section comes from, when it is not ``results`` itself."""
    over = overhead(results.get("overhead", {}).get("sets", []))
    outage_rows = outages(results.get("outage", {}).get("fits", []), over)
    start = startup(results.get("startup", {}))
    sunk = sink((sink_results or results).get("sink"))
    none = over.get("none", {})
    notes = {"runtime-step1": _server_note(over.get("runtime-step1", {}), none),
             "runtime-epoch": _fixed_cost_note(over.get("runtime-epoch", {}), none)}
    return {"overhead": over, "outage": outage_rows, "startup": start, "sink": sunk, "server_notes": notes,
            "targets": targets(over, outage_rows, start, results.get("image", {}), sunk)}
