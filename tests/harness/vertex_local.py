"""Replay a KubeflowV2DagRunner pipeline spec locally, task by task, the way Vertex runs it.

For each task: build the ExecutorInput JSON from the compiled spec (constant
parameters, upstream artifacts, output artifact URIs and an outputFile laid out
as Vertex lays it out), run the lifecycle preCacheCheck driver if the spec has
one, then the container's command + args with ``{{$}}`` replaced. The image's
``python`` and ``/opt/trainer-runtime/entrypoint.py`` map to this venv and this
checkout. What cannot run here: Vertex itself (scheduling, images, GCS); the
spec, the commands and the executor code are the real ones.
"""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGE_ENTRYPOINT = "/opt/trainer-runtime/entrypoint.py"


@dataclass
class TaskRun:
    task: str
    returncode: int
    stdout: str
    stderr: str
    executor_input: dict
    output_file: Path
    outputs: dict = field(default_factory=dict)


def load_spec(path: Path) -> dict:
    data = json.loads(Path(path).read_text())
    return data.get("pipelineSpec", data)


def _map_command(argv: list[str]) -> list[str]:
    mapped = []
    for arg in argv:
        if arg == "python":
            mapped.append(sys.executable)
        elif arg == IMAGE_ENTRYPOINT:
            mapped.append(str(REPO / "entrypoint.py"))
        else:
            mapped.append(arg)
    return mapped


class LocalVertex:
    def __init__(self, spec: dict, root: Path, job_id: str = "recommender-20261123120000") -> None:
        self.spec = spec
        self.root = Path(root)
        self.job_id = job_id
        self.produced: dict[str, dict] = {}  # task -> executor output artifacts

    def executor_input(self, task: str) -> tuple[dict, Path]:
        task_spec = self.spec["root"]["dag"]["tasks"][task]
        component = self.spec["components"][task_spec["componentRef"]["name"]]
        parameters = {name: value["runtimeValue"]["constantValue"]
                      for name, value in task_spec.get("inputs", {}).get("parameters", {}).items()}
        artifacts = {}
        for name, value in task_spec.get("inputs", {}).get("artifacts", {}).items():
            ref = value["taskOutputArtifact"]
            upstream = self.produced[ref["producerTask"]][ref["outputArtifactKey"]]
            schema = component["inputDefinitions"]["artifacts"][name]["artifactType"]
            artifacts[name] = {"artifacts": [dict(a, type=schema) for a in upstream["artifacts"]]}
        task_dir = self.root / "123456789" / self.job_id / f"{task}_{uuid.uuid4().hex[:12]}"
        outputs = {}
        for name, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items():
            outputs[name] = {"artifacts": [{"name": f"{task}-{name}", "type": definition["artifactType"],
                                            "uri": str(task_dir / name), "metadata": {}}]}
        output_file = task_dir / "executor_output.json"
        return ({"inputs": {"parameters": parameters, "artifacts": artifacts},
                 "outputs": {"artifacts": outputs, "outputFile": str(output_file)}}, output_file)

    def command_for(self, argv: list[str]) -> list[str]:
        """How to start a container command here: this venv and checkout (override for docker)."""
        return _map_command(argv)

    def _commands(self, task: str) -> tuple[dict, Path, list[str] | None, list[str]]:
        """(ExecutorInput, outputFile, driver argv or None, executor argv) for one task."""
        executor_input, output_file = self.executor_input(task)
        output_file.parent.mkdir(parents=True, exist_ok=True)
        label = self.spec["components"][self.spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]
        container = self.spec["deploymentSpec"]["executors"][label["executorLabel"]]["container"]
        payload = json.dumps(executor_input)
        driver = container.get("lifecycle", {}).get("preCacheCheck")
        driver_cmd = (self.command_for(driver["command"] + [a.replace("{{$}}", payload) for a in driver["args"]])
                      if driver else None)
        cmd = self.command_for(container["command"] + [a.replace("{{$}}", payload) for a in container["args"]])
        return executor_input, output_file, driver_cmd, cmd

    def start(self, task: str, env: dict) -> tuple[subprocess.Popen, dict]:
        """Start a task without a driver step and return at once (for signal tests)."""
        executor_input, _, driver_cmd, cmd = self._commands(task)
        assert driver_cmd is None, "start() is for tasks without a lifecycle driver"
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), \
            executor_input

    def run(self, task: str, env: dict, timeout: float = 900) -> TaskRun:
        executor_input, output_file, driver_cmd, cmd = self._commands(task)
        if driver_cmd:
            done = subprocess.run(driver_cmd, env=env, capture_output=True, text=True, timeout=timeout)
            if done.returncode:
                return TaskRun(task, done.returncode, done.stdout, done.stderr, executor_input, output_file)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        result = TaskRun(task, done.returncode, done.stdout, done.stderr, executor_input, output_file)
        if done.returncode == 0 and output_file.exists():
            result.outputs = json.loads(output_file.read_text()).get("artifacts", {})
            self.produced[task] = result.outputs
        return result
