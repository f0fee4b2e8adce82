"""Replica roles from TF_CONFIG and Vertex's CLUSTER_SPEC: one chief per cluster, TensorFlow's rule."""
from __future__ import annotations

import json

import pytest

from trainer_runtime.run.cluster import Replica, current


def tf_config(cluster: dict, kind: str, index: int) -> dict:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})}


CHIEF_AND_WORKERS = {"chief": ["h:1"], "worker": ["h:2", "h:3"]}
WORKERS_ONLY = {"worker": ["h:1", "h:2"]}
WITH_PS = {"chief": ["h:1"], "worker": ["h:2"], "ps": ["h:3"], "evaluator": ["h:4"]}


@pytest.mark.parametrize("cluster, kind, index, chief", [
    (CHIEF_AND_WORKERS, "chief", 0, True),
    (CHIEF_AND_WORKERS, "worker", 0, False),   # a chief exists: worker 0 is just a worker
    (CHIEF_AND_WORKERS, "worker", 1, False),
    (WORKERS_ONLY, "worker", 0, True),         # no chief: TensorFlow makes worker 0 the chief (TFX's _is_chief misses it)
    (WORKERS_ONLY, "worker", 1, False),
    ({"master": ["h:1"], "worker": ["h:2"]}, "master", 0, True),
    ({"master": ["h:1"], "worker": ["h:2"]}, "worker", 0, False),
    (WITH_PS, "ps", 0, False),
    (WITH_PS, "evaluator", 0, False),
])
def test_exactly_the_chief_tracks(cluster, kind, index, chief):
    replica = current(tf_config(cluster, kind, index))
    assert replica.distributed and replica.is_chief is chief
    assert replica.name == f"{kind}-{index}"
    assert replica.status_file() == f"mlflow_status.{kind}-{index}.json"


def test_every_cluster_has_one_chief():
    for cluster in (CHIEF_AND_WORKERS, WORKERS_ONLY, WITH_PS):
        roles = [current(tf_config(cluster, kind, i)) for kind, hosts in cluster.items() for i in range(len(hosts))]
        assert [r.name for r in roles if r.is_chief] == [
            "chief-0" if "chief" in cluster else "worker-0"], cluster


@pytest.mark.parametrize("env", [{}, {"TF_CONFIG": ""}, {"TF_CONFIG": "{}"},
                                 tf_config({"chief": ["h:1"]}, "chief", 0),
                                 {"TF_CONFIG": json.dumps({"cluster": WORKERS_ONLY})}])
def test_a_single_process_tracks(env):
    replica = current(env)
    assert replica.is_chief and not replica.distributed and replica.tags() == {}


def test_an_unreadable_tf_config_tracks_as_a_single_process(caplog):
    replica = current({"TF_CONFIG": "{not json"})
    assert replica.is_chief and not replica.distributed
    assert "TF_CONFIG is not a cluster description" in caplog.text


def test_vertex_cluster_spec_when_tf_config_is_absent():
    spec = {"cluster": {"workerpool0": ["c:2222"], "workerpool1": ["w0:2222", "w1:2222"]},
            "environment": "cloud", "task": {"type": "workerpool1", "index": 1, "trial": ""}}
    worker = current({"CLUSTER_SPEC": json.dumps(spec)})
    assert worker == Replica("worker", 1, {"chief": 1, "worker": 2}, "CLUSTER_SPEC")
    assert not worker.is_chief
    spec["task"] = {"type": "workerpool0", "index": 0}
    assert current({"CLUSTER_SPEC": json.dumps(spec)}).is_chief


def test_tf_config_wins_over_cluster_spec():
    spec = {"cluster": {"workerpool0": ["c:2222"], "workerpool1": ["w:2222"]}, "task": {"type": "workerpool0"}}
    replica = current({**tf_config(CHIEF_AND_WORKERS, "worker", 1), "CLUSTER_SPEC": json.dumps(spec)})
    assert replica.source == "TF_CONFIG" and not replica.is_chief


def test_the_chief_tags_the_cluster_shape():
    assert current(tf_config(WITH_PS, "chief", 0)).tags() == {
        "tf.cluster.chief": "1", "tf.cluster.workers": "1", "tf.cluster.ps": "1", "tf.cluster.evaluators": "1",
        "tf.cluster.replicas": "4", "tf.cluster.tracked_by": "chief-0"}
    assert current(tf_config(WORKERS_ONLY, "worker", 0)).tags() == {
        "tf.cluster.workers": "2", "tf.cluster.replicas": "2", "tf.cluster.tracked_by": "worker-0"}
