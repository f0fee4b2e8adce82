"""The fault scenarios of the reliability table, each a real trainer process under a real fault.

Budgets are configurable so a slow machine can stretch them rather than skip anything:
``TR_FAULT_LONG_OUTAGE`` (default 300 s), ``TR_FAULT_TOKEN_FIT`` (default 180 s of training
under 60 s ID tokens), ``TR_FAULT_FLUSH_TIMEOUT`` (the close budget, default 20 s).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.faults.runner import REPO, Run, Scenario

LONG_OUTAGE = int(os.environ.get("TR_FAULT_LONG_OUTAGE", "300"))
TOKEN_FIT = int(os.environ.get("TR_FAULT_TOKEN_FIT", "180"))
FLUSH_TIMEOUT = float(os.environ.get("TR_FAULT_FLUSH_TIMEOUT", "20"))
GRACE = 25.0
WIRINGS = ("standalone", "executor", "shim", "forwarder")
DOWN = {"drop": True}
HEALED = {"drop": False}


def outage(seconds: float, after_epoch: int = 1):
    def drive(run: Run) -> None:
        run.wait_epoch(after_epoch)
        run.proxy.set(**DOWN)
        time.sleep(seconds)
        run.proxy.set(**HEALED)
    return drive


def healed_before_end(epochs: int):
    def drive(run: Run) -> None:
        run.wait_epoch(1)
        run.proxy.set(**DOWN)
        run.wait_epoch(epochs - 2)  # the last epoch starts with a 1 s pause: fit returns ~1 s later
        run.proxy.set(**HEALED)
    return drive


def down_to_the_end(run: Run) -> None:
    run.wait_epoch(1)
    run.proxy.set(**DOWN)


def sigterm(during_outage: bool):
    def drive(run: Run) -> None:
        run.wait(lambda: (run.status() or {}).get("stage") == "training", 600, "stage training")
        run.wait_epoch(2, timeout=600)
        if during_outage:
            run.proxy.set(**DOWN)
            run.wait_epoch(3, timeout=120)  # epoch 3's points are accepted during the outage
        run.send(signal.SIGTERM)
        if during_outage:  # Vertex may signal again; a second SIGTERM must not abort the close
            time.sleep(2.0)
            if run.proc is not None and run.proc.poll() is None:
                run.proc.send_signal(signal.SIGTERM)
    return drive


def sigkill(run: Run) -> None:
    run.wait_epoch(4)
    time.sleep(0.5)
    run.send(signal.SIGKILL)


#: seconds a row's `trainer-runtime replay` may keep sending (its default is 300): the rows check that a backlog
#: lands exactly once, not the server's pace; a loaded CI machine's SQLite server took ~110,000 of the burst
#: row's ~126,000 points in two 300 s replays
REPLAY_TIMEOUT = 1200


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer_runtime.commands.cli", *args], capture_output=True, text=True,
                          timeout=REPLAY_TIMEOUT + 300, cwd=str(REPO),
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def replay_twice(run: Run, row) -> None:
    """The server is back: replay, then replay again; count the points after each."""
    from tests.faults.runner import measure

    for label in ("replay", "replay again"):
        done = cli("replay", run.status_dir, "--timeout", str(REPLAY_TIMEOUT))
        again = measure(run)
        row.extra[label] = {"exit_code": done.returncode, "out": done.stdout.strip()[-300:],
                            "on_server": again.on_server, "in_spool": again.in_spool, "lost": again.lost,
                            "duplicates": again.duplicates, "run_status": again.run_status}


def stale_then_replay(run: Run, row) -> None:
    """After a SIGKILL the status is a stale `training`; the local spool replays what it kept."""
    from tests.faults.runner import measure

    time.sleep(5.0)  # > 2 x the 2 s heartbeat interval
    shown = cli("status", run.status_dir)
    row.extra["status_cmd"] = {"exit_code": shown.returncode, "out": shown.stdout[-600:]}
    done = cli("replay", run.spool_dir, "--timeout", str(REPLAY_TIMEOUT))
    again = measure(run)
    row.extra["replay"] = {"exit_code": done.returncode, "out": done.stdout.strip()[-300:],
                           "on_server": again.on_server, "lost": again.lost, "run_status": again.run_status}


def many_at_once(run: Run) -> None:
    """19 more trainers start with the first, on the same new experiment."""
    procs = []
    for i in range(19):
        env = run.environment()
        env["TRAINER_RUNTIME_STATUS_DIR"] = str(run.dir / f"status-{i}")
        env["TRAINER_RUNTIME_SPOOL_DIR"] = str(run.dir / f"spool-{i}")
        env["FAULT_MARKS"] = str(run.dir / f"marks-{i}.jsonl")
        procs.append(subprocess.Popen(run.command(), env=env, cwd=str(REPO), stdout=subprocess.DEVNULL,
                                      stderr=open(run.dir / f"stderr-{i}.log", "w")))
    run.extra_codes = [p.wait(timeout=600) for p in procs]


def count_runs(run: Run, row) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(run.mlflow_url)
    experiments = [e for e in client.search_experiments() if e.name == run.experiment]
    runs = client.search_runs([experiments[0].experiment_id], max_results=100) if experiments else []
    row.extra["runs"] = {"experiments": len(experiments), "runs": len(runs),
                         "finished": sum(r.info.status == "FINISHED" for r in runs),
                         "exit_codes": [row.exit_code, *getattr(run, "extra_codes", [])]}


def scenarios(with_tfx: bool = True) -> list[Scenario]:
    fit = FLUSH_TIMEOUT
    items = [
        Scenario("healthy", epochs=6, expect=dict(stage="completed", exit_code=0, tracking="ok",
                                                  close_budget=fit)),
        Scenario("cold start 45 s", faults={"cold_start_seconds": 45}, epochs=4,
                 env={"TRAINER_RUNTIME_PREFLIGHT_TIMEOUT": "150"},
                 expect=dict(stage="completed", exit_code=0, tracking="ok", close_budget=fit)),
        Scenario("down throughout", faults=DOWN, expect=dict(stage="failed", exit_code=10)),
        Scenario("401 from the server", faults={"status": 401}, expect=dict(stage="failed", exit_code=11)),
        Scenario("403 from the server", faults={"status": 403}, expect=dict(stage="failed", exit_code=11)),
        Scenario("Host-header 403", faults={"host_403": True}, expect=dict(stage="failed", exit_code=12)),
        Scenario("outage 10 s mid-training", outage(10), epochs=20,
                 expect=dict(stage="completed", exit_code=0, tracking="ok", close_budget=fit)),
        Scenario("outage 60 s mid-training", outage(60), epochs=70,
                 expect=dict(stage="completed", exit_code=0, tracking="ok", close_budget=fit)),
        Scenario(f"outage {LONG_OUTAGE} s mid-training", outage(LONG_OUTAGE), epochs=LONG_OUTAGE + 10,
                 timeout=LONG_OUTAGE + 300,
                 expect=dict(stage="completed", exit_code=0, tracking="ok", close_budget=fit)),
        Scenario("outage healed 1 s before fit returns", healed_before_end(12), epochs=12,
                 expect=dict(stage="completed", exit_code=0, tracking="ok", close_budget=2.0)),
        Scenario("down from epoch 2 to the end", down_to_the_end, epochs=8, after=replay_twice,
                 expect=dict(stage="completed", exit_code=0, tracking="degraded", close_budget=fit)),
        Scenario("SIGKILL at epoch 5", sigkill, epochs=30, after=stale_then_replay,
                 expect=dict(stage="training", exit_code=-9)),
        Scenario(f"ID token expiry (60 s tokens, {TOKEN_FIT} s fit)", epochs=TOKEN_FIT, auth=True,
                 env={"TRAINER_RUNTIME_AUTH": "google"}, timeout=TOKEN_FIT + 300,
                 expect=dict(stage="completed", exit_code=0, tracking="ok", close_budget=fit)),
        Scenario("GCS 503 on the first status write", epochs=3,
                 expect=dict(stage="completed", exit_code=0, tracking="ok", close_budget=fit)),
        Scenario("20 trainers start at once on one new experiment", many_at_once, target="nothing",
                 after=count_runs, alone=True, expect=dict(stage="completed", exit_code=0, tracking="ok")),
        Scenario("NaN/inf, invalid names, 10k distinct keys", epochs=3, env={"FAULT_EXTRA": "weird"},
                 expect=dict(stage="completed", exit_code=0, tracking="ok", close_budget=fit)),
    ]
    for wiring in WIRINGS if with_tfx else WIRINGS[:1]:
        for during in (False, True):
            items.append(Scenario(f"SIGTERM {'during an outage' if during else 'healthy'} ({wiring})",
                                  sigterm(during), wiring=wiring, epochs=60, timeout=600,
                                  expect=dict(stage="killed", exit_code=143, close_budget=GRACE,
                                              tracking="degraded" if during else "ok")))
    for name, drive, epochs in (("outage 10 s mid-training", outage(10), 20),
                                ("outage 60 s mid-training", outage(60), 70),
                                ("outage healed 1 s before fit returns", healed_before_end(12), 12),
                                ("down from epoch 2 to the end", down_to_the_end, 8)):
        items.append(Scenario(name, drive, tracker="mlflow", epochs=epochs, timeout=480))
    items += [s for s in user_code_scenarios() if with_tfx or s.wiring == "standalone"]
    return items


USER_LONG_OUTAGE = int(os.environ.get("TR_FAULT_USER_LONG_OUTAGE", "400"))
USER_BURST_OUTAGE = int(os.environ.get("TR_FAULT_USER_BURST_OUTAGE", "600"))
PACE = 0.1          # seconds between the custom loop's steps
#: how long past its steps a user-code row may run before the runner calls it hung and kills it. Measured
#: under `make test`'s three suites: the executor rows' TFX pipeline takes ~100 s to reach the Trainer,
#: and the autolog rows' 22 tf-keras fits ~3 s each: 400 s killed a run that was only slow
HANG_NET = 900
SHIP = 5            # spool_ship_interval in the user-code rows


def steps_for(seconds: float) -> int:
    """Steps of the custom loop that outlast an outage of ``seconds`` from step 20, with 10 s to spare."""
    return 20 + int((seconds + 10) / PACE)


def down_from_step(step: int):
    def drive(run: Run) -> None:
        run.wait_epoch(step)
        run.proxy.set(**DOWN)
    return drive


def loop_sigterm_in_outage(run: Run) -> None:
    run.wait_epoch(20, timeout=600)
    run.proxy.set(**DOWN)
    run.wait_epoch(40, timeout=120)
    run.send(signal.SIGTERM)


def loop_sigkill_in_outage(run: Run) -> None:
    """Down from step 20; once a ship has taken what was logged up to step 60 (and one interval
    more), SIGKILL: the container and its local spool are gone."""
    import shutil

    run.wait_epoch(20, timeout=600)
    run.proxy.set(**DOWN)
    run.wait_epoch(60, timeout=120)
    time.sleep(SHIP + 1.0)
    run.send(signal.SIGKILL)
    run.proc.wait(timeout=60)
    shutil.rmtree(run.spool_dir, ignore_errors=True)


def user_replay_twice(run: Run, row) -> None:
    from mlflow import MlflowClient

    from tests.faults.runner import artifact_paths_on_server
    from tests.faults.user_loop import ARTIFACTS

    replay_twice(run, row)
    if row.run_id:
        row.extra["replay"]["artifacts_on_server"] = len(artifact_paths_on_server(
            MlflowClient(run.mlflow_url), row.run_id, set(ARTIFACTS)))


def user_replay_shipped(run: Run, row) -> None:
    """After a SIGKILL: replay what was shipped beside the status (the local spool is gone)."""
    from tests.faults.runner import measure

    done = cli("replay", run.status_dir, "--timeout", str(REPLAY_TIMEOUT))
    again = measure(run)
    row.extra["replay"] = {"exit_code": done.returncode, "out": done.stdout.strip()[-300:],
                           "on_server": again.on_server, "in_spool": again.in_spool, "lost": again.lost,
                           "duplicates": again.duplicates, "run_status": again.run_status}


#: the `after` steps that run `trainer-runtime replay <status dir>`, which rewrites the status: its
#: tracking then says `replayed`
REPLAYS_THE_STATUS = (replay_twice, user_replay_twice, user_replay_shipped)


def user_code_scenarios() -> list[Scenario]:
    """The same custom loop under the runtime (standalone and TrackedExecutor) and under plain MLflow."""
    env = {"TRAINER_RUNTIME_SPOOL_SHIP_INTERVAL": str(SHIP)}
    fit = FLUSH_TIMEOUT
    ok = dict(stage="completed", exit_code=0, tracking="ok", close_budget=fit)
    rows = []
    for wiring in ("standalone", "executor"):
        for name, drive, steps, expect, after in (
                ("outage 10 s mid-training", outage(10, after_epoch=20), steps_for(10), ok, None),
                ("outage 60 s mid-training", outage(60, after_epoch=20), steps_for(60), ok, None),
                (f"outage {USER_LONG_OUTAGE} s mid-training", outage(USER_LONG_OUTAGE, after_epoch=20),
                 steps_for(USER_LONG_OUTAGE), ok, None),
                ("down from step 20 to the end", down_from_step(20), 60,
                 dict(stage="completed", exit_code=0, tracking="degraded", close_budget=fit), user_replay_twice),
                ("SIGTERM during an outage", loop_sigterm_in_outage, 600,
                 dict(stage="killed", exit_code=143, tracking="degraded", close_budget=GRACE), user_replay_twice),
                ("SIGKILL during an outage", loop_sigkill_in_outage, 600,
                 dict(stage="training", exit_code=-9), user_replay_shipped),
                ("autolog + a callback logging epochs, outage 10 s", outage(10, after_epoch=20), steps_for(10),
                 ok, None),
                ("synchronous=False, down from step 20 to the end", down_from_step(20), 60,
                 dict(stage="completed", exit_code=0, tracking="degraded", close_budget=fit), user_replay_twice)):
            user = "autolog" if name.startswith("autolog") else "async" if name.startswith("synchronous") else ""
            rows.append(Scenario(f"user code: {name} ({wiring})", drive, wiring=wiring, epochs=steps,
                                 epoch_seconds=PACE, loop=True, env={**env, "FAULT_USER": user}, expect=expect, after=after,
                                 timeout=steps * PACE + HANG_NET))
    # A backlog that outlasts the training: ~126,000 points pile up (RAM window, spool), the close keeps them,
    # replay lands them exactly once. (It healed 120 s before the end once, and whether the server drained the
    # backlog by then depended on the machine's load: 33,377 still pending under make test's, 0 when quiet.)
    burst_steps = steps_for(USER_BURST_OUTAGE)
    rows.append(Scenario(f"user code: 20 more points a step, down from step 20 for {USER_BURST_OUTAGE} s to the end "
                         "(standalone)", down_from_step(20), epochs=burst_steps, epoch_seconds=PACE, loop=True,
                         env={**env, "FAULT_USER": "burst"},
                         expect=dict(stage="completed", exit_code=0, tracking="degraded", close_budget=fit),
                         after=user_replay_twice, timeout=burst_steps * PACE + 900, own_server=True))
    for name, drive, steps, user in (
            ("outage 10 s mid-training", outage(10, after_epoch=20), steps_for(10), ""),
            ("outage 60 s mid-training", outage(60, after_epoch=20), steps_for(60), ""),
            (f"outage {USER_LONG_OUTAGE} s mid-training", outage(USER_LONG_OUTAGE, after_epoch=20),
             steps_for(USER_LONG_OUTAGE), ""),
            ("down from step 20 to the end", down_from_step(20), 60, ""),
            ("autolog + a callback logging epochs, outage 10 s", outage(10, after_epoch=20), steps_for(10),
             "autolog"),
            ("synchronous=False, down from step 20 to the end", down_from_step(20), 60, "async")):
        rows.append(Scenario(f"user code: {name} (standalone)", drive, tracker="mlflow", epochs=steps,
                             epoch_seconds=PACE,
                             loop=True, env={"FAULT_USER": user}, timeout=steps * PACE + 480))
    return rows


def prepare(scenario: Scenario, shared) -> Scenario:
    """Scenario set-up that needs the session's servers."""
    if scenario.name.startswith("ID token expiry"):
        shared.metadata.control.set(lifetime=60, fail_status=None, reset_stats=True)
    if scenario.name.startswith("GCS 503"):
        prefix = f"faults/{int(time.time() * 1000)}"
        scenario.env.update(TRAINER_RUNTIME_STATUS_DIR=f"gs://{shared.gcs_bucket}/{prefix}",
                            STORAGE_EMULATOR_HOST=shared.gcs_proxy.url)
        shared.gcs_proxy.control.set(reset=True)
        shared.gcs_proxy.control.set(fail_next=1)
        scenario.expect["gcs_prefix"] = prefix
    return scenario
