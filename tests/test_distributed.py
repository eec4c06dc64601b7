"""torch.distributed: shards, reductions, and 2 gloo ranks on CPU against one process (map fit, information gain)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from latentmap import distributed
from latentmap.stats import Moments

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", LATENTMAP_DIST_BACKEND="gloo", CUDA_VISIBLE_DEVICES="")
    return env


def _torchrun(args, ranks=2, timeout=300):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(ranks), *args], capture_output=True, text=True, env=_env(), timeout=timeout, cwd=ROOT)


def _single(args, timeout=300):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=_env(), timeout=timeout,
                          cwd=ROOT)


# --------------------------------------------------------------------------- in one process

def test_shards_cover_every_index_once():
    for n, world in [(10, 3), (7, 2), (2, 4), (0, 2), (100000, 8)]:
        parts = [distributed.shard_indices(n, r, world) for r in range(world)]
        assert np.array_equal(np.concatenate(parts), np.arange(n))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_one_process_is_rank_zero_of_one_and_reductions_return_their_input():
    assert not distributed.active() and distributed.world_size() == 1 and distributed.is_main()
    t = torch.arange(3, dtype=torch.float64)
    assert distributed.all_reduce_sum(t) is t and distributed.all_reduce_count(5) == 5
    m = Moments(full=True).update(torch.randn(20, 3), torch.randn(20, 2))
    assert distributed.all_reduce_moments(m, 3, 2) is m
    data = torch.zeros(10, 1, 2, 2)
    assert distributed.shard(data) is data


def test_moments_state_of_shards_merges_to_the_whole():
    """What the ranks' reduction relies on: moments of disjoint shards merge into the moments of the union."""
    x, y = torch.randn(1001, 7) * 3 + 50, torch.randn(1001, 4) - 20
    whole = Moments(full=True).update(x, y)
    parts = [Moments(full=True).update(x[idx], y[idx]) for idx in
             (torch.as_tensor(distributed.shard_indices(1001, r, 3)) for r in range(3))]
    merged = Moments.from_state(parts[0].state(), full=True).merge(parts[1]).merge(parts[2])
    for key in ("mean_x", "cxx", "mean_y", "cxy", "cyy"):
        torch.testing.assert_close(getattr(merged, key), getattr(whole, key), rtol=1e-12, atol=1e-9)


# --------------------------------------------------------------------------- 2 gloo ranks on CPU

FIT = ["map", "fit", "--source", "py:helpers_dist:model_a", "--target", "py:helpers_dist:model_b", "--trust-code",
       "--dataset", "synthetic:600", "--fit-split", "all", "--batch-size", "64", "--device", "cpu", "--no-progress"]


@pytest.mark.slow
def test_map_fit_on_two_ranks_equals_one_process(tmp_path):
    from latentmap.maps.linear import LinearMap

    one = _single(["-m", "latentmap", *FIT, "--out", str(tmp_path / "one")])
    assert one.returncode == 0, one.stderr
    two = _torchrun(["-m", "latentmap", *FIT, "--out", str(tmp_path / "two")])
    assert two.returncode == 0, two.stderr
    a, b = LinearMap.load(tmp_path / "one"), LinearMap.load(tmp_path / "two")
    assert a.n_samples_seen_ == b.n_samples_seen_ == 600
    np.testing.assert_allclose(b.coef_, a.coef_, rtol=1e-9, atol=1e-9 * np.abs(a.coef_).max())
    np.testing.assert_allclose(b.intercept_, a.intercept_, rtol=1e-9, atol=1e-9 * np.abs(a.intercept_).max())
    assert two.stdout.count("saved to") == 1  # rank 0 alone prints
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # and nothing else was written


@pytest.mark.slow
def test_information_gain_on_two_ranks_equals_one_process(tmp_path):
    script = str(TESTS / "helpers_dist.py")
    one = _single([script, str(tmp_path / "one.npy"), "90"])
    assert one.returncode == 0, one.stderr
    two = _torchrun([script, str(tmp_path / "two.npy"), "90"])
    assert two.returncode == 0, two.stderr
    a, b = np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy")
    assert a[-1] == b[-1] == 90
    np.testing.assert_allclose(b[:-1], a[:-1], rtol=1e-9, atol=1e-12)
    assert (np.abs(a[:-1]) > 0).any()


@pytest.mark.slow
def test_a_rank_dying_mid_run_leaves_no_output(tmp_path):
    args = ["-m", "latentmap", *FIT, "--out", str(tmp_path / "map")]
    args[args.index("py:helpers_dist:model_a")] = "py:helpers_dist:model_a_dying"
    run = _torchrun(args)
    assert run.returncode != 0 and "exitcode: 3" in run.stderr  # rank 1 died as planned, rank 0 stopped
    assert list(tmp_path.iterdir()) == []  # no map, no temporary folder
