"""The cluster launchers for real: a one-node Slurm cluster and a Ray head started on this
machine (tests/cluster.py) run the sweep the basic launcher runs, and MLflow holds the same
layout and the same metrics.  CI installs Slurm, MUNGE and the ``ray`` extra (.ci/run)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from cluster import ray_head, require, slurm_cluster
from test_sweeps import TINY, metric_histories, run_train, sweep_children

# one worker runs the module, so the basic launcher's reference sweep runs once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster")]
SWEEP = ["-m", "seed=3", "activation=relu,tanh", *TINY]
# the preset asks 2 CPUs and 4 GB per job: this node has 2 CPUs and 2 GB, so both jobs fit at once
SLURM_TEST_OVERRIDES = ["hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]

Histories = dict[str, dict[str, list[tuple[int, float]]]]


def sweep_outcome(folder: Path) -> tuple[dict[str, list[str]], Histories]:
    """The only sweep in ``folder``'s store, checked: a FINISHED parent of 2 FINISHED children.
    Returns each child's metric keys and its histories of val/loss, grad_norm/layer_02 and
    update_ratio/layer_01, by run name."""
    parent, children = sweep_children(folder)
    assert parent.info.status == "FINISHED" and parent.data.tags["n_jobs"] == "2"
    assert [c.info.status for c in children] == ["FINISHED", "FINISHED"]
    keys = {c.info.run_name: sorted(c.data.metrics) for c in children}
    return keys, {c.info.run_name: metric_histories(folder, c.info.run_id) for c in children}


@pytest.fixture(scope="module")
def basic_outcome(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Histories]:
    """The reference: the same sweep with the basic launcher."""
    folder = tmp_path_factory.mktemp("basic")
    done = run_train(folder, *SWEEP)
    assert done.returncode == 0, done.stderr
    keys, histories = sweep_outcome(folder)
    assert set(histories) == {"relu · d3-w8-b32-s3", "tanh · d3-w8-b32-s3"}  # swept first
    assert all(f"grad_norm/layer_0{l}" in k for k in keys.values() for l in (1, 2, 3))
    return keys, histories


def test_slurm_launcher_on_a_one_node_cluster(
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    basic_outcome: tuple[dict, Histories],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
        monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
        done = run_train(tmp_path, *SWEEP, "hydra/launcher=slurm", *SLURM_TEST_OVERRIDES)
        assert done.returncode == 0, done.stderr + cluster.log("slurmctld")
        jobs = cluster.finished_jobs()
    # the sweep's jobs were the two tasks of one Slurm job array, and both exited 0
    assert len({job["ArrayJobId"] for job in jobs}) == 1
    assert sorted((j["ArrayTaskId"], j["JobState"], j["ExitCode"]) for j in jobs) == [
        ("0", "COMPLETED", "0:0"),
        ("1", "COMPLETED", "0:0"),
    ]
    assert sweep_outcome(tmp_path) == basic_outcome


def test_ray_launcher_against_a_local_head(
    tmp_path: Path, basic_outcome: tuple[dict, Histories], monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = importlib.util.find_spec("hydra_plugins.hydra_ray_launcher")
    require(plugin is not None, "needs the ray extra (pip install -e '.[ray]')")
    # head and driver alike: once ~/.ray/auth_token exists (a local ray.init() writes one), a
    # Ray 2.60 head requires the token, and a driver sends it only with RAY_AUTH_MODE=token
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with ray_head(tmp_path) as address:  # Hydra's job folders land beside the store
        ray = ["hydra/launcher=ray_head", f"hydra.launcher.ray.init.address={address}"]
        done = run_train(tmp_path, *SWEEP, *ray)
        assert done.returncode == 0, done.stderr
    assert sweep_outcome(tmp_path) == basic_outcome
