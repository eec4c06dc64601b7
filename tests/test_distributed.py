"""torch.distributed: shards, reductions, and 2 gloo ranks on CPU against one process.

One torchrun launch (and one single process) runs every command that shards — map fit, the information gain,
map eval, map atlas, bench expressiveness, support-set build — and the tests compare their outputs; another
launch loses a rank mid-run. About 20-30 s together on 2 cores, so not slow-gated: CI runs them.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from latentmap import distributed
from latentmap.stats import Moments

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _env():
    # no thread settings: the default a user gets, a plain run against torchrun's ranks
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT", "OMP_NUM_THREADS", "LATENTMAP_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update(LATENTMAP_DIST_BACKEND="gloo", CUDA_VISIBLE_DEVICES="")
    return env


def _torchrun(args, ranks=2, timeout=300):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(ranks), *args], capture_output=True, text=True, env=_env(), timeout=timeout, cwd=ROOT)


def _single(args, timeout=300):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=_env(), timeout=timeout,
                          cwd=ROOT)


# --------------------------------------------------------------------------- in one process

def _one_process_batches(n: int, batch: int) -> list[list[int]]:
    return [list(range(start, min(start + batch, n))) for start in range(0, n, batch)]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_each_rank_runs_batches_of_one_process(world):
    """Cut into batches from its first row, as a command does, each rank's shard gives one process's batches:
    together all of them, each once, in order, and the ranks' batch counts differ by at most one."""
    for n in (0, 1, 5, 16, 70, 301, 1000):
        for batch in (1, 7, 16, 64, 256):
            parts = [distributed.shard_indices(n, batch, r, world) for r in range(world)]
            assert np.array_equal(np.concatenate(parts), np.arange(n)), (n, batch)
            cut = [p[s:s + batch].tolist() for p in parts for s in range(0, len(p), batch)]
            assert cut == _one_process_batches(n, batch), (n, batch)
            counts = [-(-len(p) // batch) for p in parts]
            assert max(counts) - min(counts) <= 1, (n, batch, counts)


def test_shard_indices_refuse_bad_settings():
    from latentmap.errors import ConfigError

    with pytest.raises(ConfigError, match="batch_size"):
        distributed.shard_indices(10, 0, 0, 2)
    with pytest.raises(ConfigError, match="rank"):
        distributed.shard_indices(10, 4, 2, 2)


@pytest.fixture
def as_rank(monkeypatch):
    """Make this process answer as rank ``r`` of ``world`` (the collectives stay those of one process)."""
    def set_rank(r: int, world: int):
        monkeypatch.setattr(distributed, "rank", lambda: r)
        monkeypatch.setattr(distributed, "world_size", lambda: world)
    return set_rank


def _py_model(name: str):
    from latentmap.models.registry import load_model

    return load_model(f"py:tests.helpers.distributed:{name}", device="cpu", allow_pickle=True)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_information_gain_of_simulated_ranks_equals_one_process(world, as_rank, monkeypatch):
    """Each simulated rank's sums, added, give one process's gains to float64 rounding, for several batch sizes
    and decode rows, on a model whose rows depend on the other rows of their call."""
    from latentmap.data.datasets import load_dataset
    from latentmap.support.info_gain import information_gain

    model, data = _py_model("model_b"), load_dataset("synthetic:70", "all")
    for batch_size, rows in [(16, None), (16, 7), (25, 40), (9, 1000)]:
        one = information_gain(model, data, batch_size=batch_size, chunk_rows=rows)
        sums, counts = [], []
        monkeypatch.setattr(distributed, "all_reduce_sum", lambda t, sums=sums: sums.append(t) or t)
        monkeypatch.setattr(distributed, "all_reduce_count", lambda k, counts=counts: counts.append(k) or k)
        for r in range(world):
            as_rank(r, world)
            information_gain(model, data, batch_size=batch_size, chunk_rows=rows)
        monkeypatch.undo()
        assert sum(counts) == 70 and len(sums) == world
        gains = (sum(sums) / sum(counts)).numpy()
        np.testing.assert_allclose(gains, one.gains, rtol=1e-12, atol=1e-15, err_msg=f"{batch_size}, {rows}")


def test_a_pass_over_other_batches_changes_the_gains():
    """The control of the test above: the model rounds a row by its call, so shards that cut a batch in two
    (rows 0-34 and 35-69 in batches of 16) give other gains than one process; the sharding helper prevents it."""
    from latentmap.data.datasets import load_dataset
    from latentmap.support.info_gain import information_gain, information_gain_sums

    model, data = _py_model("model_b"), load_dataset("synthetic:70", "all")
    one = information_gain(model, data, batch_size=16)
    halves = [information_gain_sums(model, data.subset(np.arange(a, b)), batch_size=16)[0] for a, b in
              [(0, 35), (35, 70)]]
    gains = (sum(halves) / 70).numpy()
    assert np.max(np.abs(gains - one.gains) / np.abs(one.gains).max()) > 1e-9


@pytest.mark.parametrize("world", [1, 2, 3])
def test_fit_pairs_of_simulated_ranks_are_one_process_pairs(world, as_rank):
    """map fit's pairs (images and prior samples): the ranks' latents, in rank order, are one process's bit for bit."""
    from latentmap.maps.fitting import resolve_fit_source

    a, b = _py_model("model_a"), _py_model("model_b")
    for fit in (resolve_fit_source(dataset="synthetic:150", split="all"), resolve_fit_source(samples=150)):
        for batch in (16, 64, 150):
            as_rank(0, 1)
            one = list(fit.pairs(a, b, batch))
            ranks = []
            for r in range(world):
                as_rank(r, world)
                ranks += list(fit.pairs(a, b, batch, shard=True))
            for k in (0, 1):
                assert torch.equal(torch.cat([p[k] for p in ranks]), torch.cat([p[k] for p in one])), \
                    (fit.kind, batch, k)


# --------------------------------------------------------------------------- threads

def test_threads_per_process_follow_torchruns_rule(monkeypatch):
    """LATENTMAP_THREADS, else OMP_NUM_THREADS (what torchrun passes on, or sets to 1), else 1."""
    from latentmap.errors import ConfigError

    monkeypatch.delenv("LATENTMAP_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert distributed.process_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert distributed.process_threads() == 3
    monkeypatch.setenv("LATENTMAP_THREADS", "2")
    assert distributed.process_threads() == 2
    for bad in ("0", "two"):
        monkeypatch.setenv("LATENTMAP_THREADS", bad)
        with pytest.raises(ConfigError, match="LATENTMAP_THREADS"):
            distributed.process_threads()
    from threadpoolctl import threadpool_info, threadpool_limits

    before = torch.get_num_threads()
    blas_before = {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
    try:
        monkeypatch.setenv("LATENTMAP_THREADS", "1")
        monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)  # pin_threads sets it; restored after
        assert distributed.pin_threads() == 1 == torch.get_num_threads()
        assert distributed.compute_record(64) == {"threads": 1, "batch_size": 64}
        # numpy's and scipy's BLAS (where the float64 statistics are computed) run on the same count
        import scipy.linalg  # noqa: F401  (loads scipy's own OpenBLAS where it bundles one)

        distributed.pin_threads()
        blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
        assert blas and all(i["num_threads"] == 1 for i in blas)
    finally:
        torch.set_num_threads(before)
        for path, n in blas_before.items():
            threadpool_limits(limits={path: n})


def test_a_blas_loaded_after_the_pin_runs_on_the_pinned_threads_too():
    """scipy loads its own OpenBLAS when first imported, after the CLI has pinned the threads: it gets the same
    count (a fresh process, so that scipy is not loaded yet)."""
    code = ("import sys; from latentmap import distributed; assert 'scipy.linalg' not in sys.modules; "
            "distributed.pin_threads(1); import scipy.linalg; from threadpoolctl import threadpool_info; "
            "print(sorted({i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'}))")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1]"


def test_one_process_is_rank_zero_of_one_and_reductions_return_their_input():
    assert not distributed.active() and distributed.world_size() == 1 and distributed.is_main()
    t = torch.arange(3, dtype=torch.float64)
    assert distributed.all_reduce_sum(t) is t and distributed.all_reduce_count(5) == 5
    m = Moments(full=True).update(torch.randn(20, 3), torch.randn(20, 2))
    assert distributed.all_reduce_moments(m, 3, 2) is m
    data = torch.zeros(10, 1, 2, 2)
    assert distributed.shard(data, 4) is data
    rows = np.ones((3, 2))
    assert distributed.gather_rows(rows) is rows and distributed.gather_rows(None) is None
    named = {"a": t}
    assert distributed.all_reduce_named(named) is named
    assert distributed.map_shards(lambda x: x, data, 4) is data


def test_moments_state_of_shards_merges_to_the_whole():
    """What the ranks' reduction relies on: moments of disjoint shards merge into the moments of the union."""
    x, y = torch.randn(1001, 7) * 3 + 50, torch.randn(1001, 4) - 20
    whole = Moments(full=True).update(x, y)
    parts = [Moments(full=True).update(x[idx], y[idx]) for idx in
             (torch.as_tensor(distributed.shard_indices(1001, 64, r, 3)) for r in range(3))]
    merged = Moments.from_state(parts[0].state(), full=True).merge(parts[1]).merge(parts[2])
    for key in ("mean_x", "cxx", "mean_y", "cxy", "cyy"):
        torch.testing.assert_close(getattr(merged, key), getattr(whole, key), rtol=1e-12, atol=1e-9)


# --------------------------------------------------------------------------- 2 gloo ranks on CPU

A, B = "py:tests.helpers.distributed:model_a", "py:tests.helpers.distributed:model_b"
COMMON = ["--device", "cpu", "--no-progress", "--trust-code", "--overwrite"]
FIT = ["map", "fit", "--source", A, "--target", B, "--trust-code",
       "--dataset", "synthetic:600", "--fit-split", "all", "--batch-size", "64", "--device", "cpu", "--no-progress"]
# evaluation sizes whose shards hold whole batches, so each rank's batches are a single process's batches
TEST_IMAGES = ["--dataset", "fashion-mnist", "--split", "test", "--images", "64", "--batch-size", "16"]


def _steps(out: Path) -> list:
    """What one process, or each of 2 ranks, runs: every command that shards, outputs under ``out``."""
    return [
        ["cli", [*FIT, "--out", str(out / "map")]],
        ["info_gain", str(out / "info_gain.npy"), 90],
        ["cli", ["map", "eval", "--map", str(out / "map"), *TEST_IMAGES, "--lpips", "off", "--grid-images", "4",
                 *COMMON, "--out", str(out / "eval")]],
        ["cli", ["map", "atlas", "--models", f"{A},{B}", "--fit-images", "128", "--fit-split", "train",
                 *TEST_IMAGES, "--lpips", "off", *COMMON, "--out", str(out / "atlas")]],
        ["cli", ["bench", "expressiveness", A, "--dataset", "fashion-mnist", "--images", "32", "--samples", "16",
                 "--sampler", "gmm", "--fit-images", "64", "--components", "2", "--refine-images", "6",
                 "--steps", "5", "--bootstrap", "100", "--lpips", "off", "--batch-size", "8", *COMMON,
                 "--out", str(out / "expressiveness")]],
        ["cli", ["support-set", "build", "--model", A, "--dataset", "synthetic:400", "--split", "all", "--size", "6",
                 "--gain-images", "64", "--pairs", "50", "--batch-size", "50", *COMMON, "--out",
                 str(out / "support")]],
        ["collectives", str(out / "collectives")],
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same steps in one process and on 2 gloo ranks (one torchrun launch for all of them)."""
    root = tmp_path_factory.mktemp("dist")
    done = {}
    for name, launch in (("one", _single), ("two", _torchrun)):
        (root / name).mkdir()
        spec = root / f"{name}.json"
        spec.write_text(json.dumps(_steps(root / name)))
        steps = [str(TESTS / "helpers" / "distributed.py"), "steps", str(spec)]
        started = time.perf_counter()
        run = launch(steps)
        assert run.returncode == 0, run.stderr[-3000:]
        done[name] = (root / name, run, time.perf_counter() - started)
    return done


def _numbers_equal(a, b, path="", rtol=1e-9, loose=()):
    """Nested JSON values equal, floats to ``rtol`` (relative; absolute 1e-12 near 0); 1e-5 under a key that
    starts with one of ``loose``."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), path
        for k in a:
            _numbers_equal(a[k], b[k], f"{path}.{k}", 1e-5 if str(k).startswith(tuple(loose)) else rtol, loose)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _numbers_equal(x, y, f"{path}[{i}]", rtol, loose)
    elif isinstance(a, float) and not isinstance(b, str):
        assert b is not None and (np.isnan(a) and np.isnan(b) or abs(a - b) <= rtol * abs(a) + 1e-12), \
            f"{path}: {a} vs {b}"
    elif isinstance(a, str) and (ROOT.anchor in a or "/tmp" in a):
        pass  # paths differ between the two runs' output folders
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


def _frames_equal(one: Path, two: Path, loose=()):
    import pandas as pd

    a, b = pd.read_csv(one), pd.read_csv(two)
    assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0
    for col in a.columns:
        if a[col].dtype.kind == "f":
            rtol = 1e-5 if col.startswith(tuple(loose)) else 1e-9
            np.testing.assert_allclose(b[col], a[col], rtol=rtol, atol=1e-12, err_msg=col)
        else:
            assert a[col].tolist() == b[col].tolist(), col


def _json(path: Path):
    return json.loads(path.read_text())


def test_rank_zero_alone_prints_and_writes(runs):
    (one, run_one, _), (two, run_two, _) = runs["one"], runs["two"]
    assert run_two.stdout.count("saved to") == 1 == run_one.stdout.count("saved to")
    assert len(run_two.stdout.splitlines()) == len(run_one.stdout.splitlines())  # nothing printed twice
    assert sorted(p.name for p in two.iterdir()) == sorted([p.name for p in one.iterdir()] + ["collectives-1.json"])
    for folder in ("eval", "atlas", "expressiveness", "support"):
        assert sorted(p.name for p in (two / folder).rglob("*")) == sorted(p.name for p in (one / folder).rglob("*"))


def test_gather_and_reduce_uneven_parts_on_two_ranks(runs):
    """Rank 1 gathers no rows (None), fewer bools, fewer labels and a key rank 0 lacks; both ranks get it all."""
    got = [_json(runs["two"][0] / f"collectives-{r}.json") for r in (0, 1)]
    assert got[0] == got[1]
    assert got[0]["rows"] == [[0, 1], [2, 3], [4, 5]] and got[0]["flags"] == [True, False, True, True]
    assert got[0]["empty"] == [0, 2] and got[0]["mapped"] == [0, 2, 4, 6, 8]
    assert got[0]["named"] == {"by_label": [[3] * 3] * 2 + [[1] * 3] * 2, "only_1": 5.0, "sum": [3.0, 3.0]}
    alone = _json(runs["one"][0] / "collectives-0.json")  # one process: its own input back
    assert alone["rows"] == got[0]["rows"] and alone["flags"] == [True, False, True]


def test_each_rank_encodes_its_share(runs):
    """Every sharded step: each rank encodes about half of what one process does (beyond a few probe rows of
    each model load, rank 0's grids and the worst images that every rank encodes again), none of it twice."""
    one = _json(runs["one"][0].parent / "one.json.encoded-0.json")
    two = [_json(runs["two"][0].parent / f"two.json.encoded-{r}.json") for r in (0, 1)]
    steps = [s[1][:2] if s[0] == "cli" else s[0] for s in _steps(Path("x"))]
    for k, step in enumerate(steps):
        if step != "collectives":
            a, b = two[0][k], two[1][k]
            assert one[k] > 50 and max(a, b) <= 0.6 * one[k] + 8 and a + b >= one[k], (step, one[k], a, b)


def test_map_fit_on_two_ranks_equals_one_process(runs):
    """With default settings: the plain run pins the threads torchrun gives a rank (one), and records them."""
    from latentmap.maps.linear import LinearMap

    a, b = LinearMap.load(runs["one"][0] / "map"), LinearMap.load(runs["two"][0] / "map")
    assert a.n_samples_seen_ == b.n_samples_seen_ == 600
    assert a.info_["compute"] == b.info_["compute"] == {"threads": 1, "batch_size": 64}
    np.testing.assert_allclose(b.coef_, a.coef_, rtol=1e-9, atol=1e-9 * np.abs(a.coef_).max())
    np.testing.assert_allclose(b.intercept_, a.intercept_, rtol=1e-9, atol=1e-9 * np.abs(a.intercept_).max())


def test_information_gain_on_two_ranks_equals_one_process(runs):
    a, b = (np.load(runs[k][0] / "info_gain.npy") for k in ("one", "two"))
    assert a[-1] == b[-1] == 90
    np.testing.assert_allclose(b[:-1], a[:-1], rtol=1e-9, atol=1e-12)
    assert (np.abs(a[:-1]) > 0).any()


def test_map_eval_on_two_ranks_equals_one_process(runs):
    one, two = runs["one"][0] / "eval", runs["two"][0] / "eval"
    _frames_equal(one / "relocation.csv", two / "relocation.csv")
    _frames_equal(one / "relocation_by_label.csv", two / "relocation_by_label.csv")  # fashion-mnist is labelled
    a, b = _json(one / "relocation.json"), _json(two / "relocation.json")
    _numbers_equal(a, b)
    assert a["n_images"] == 64 and a["ratio_low"] < a["ratio"] < a["ratio_high"] and len(a["by_label"]) > 2
    assert (one / "worst.png").read_bytes() == (two / "worst.png").read_bytes()  # the same images, in order


def test_map_atlas_on_two_ranks_equals_one_process(runs):
    one, two = runs["one"][0] / "atlas", runs["two"][0] / "atlas"
    for name in ("atlas.csv", "ratio_matrix.csv", "atlas_by_label.csv"):
        _frames_equal(one / name, two / name)
    a, b = _json(one / "atlas.json"), _json(two / "atlas.json")
    _numbers_equal(a, b)
    assert [r["n_images"] for r in a["results"]] == [64, 64]
    # the streamed CKA of the two models against the hand formula on their encodings of the same 64 images
    from tests.helpers import distributed as helpers_dist
    from tests.helpers.references import linear_cka_hand

    from latentmap import load_dataset

    images = load_dataset("fashion-mnist", "test").random_subset(64, 0).all_images()
    with torch.no_grad():
        z = [m[0](images).double().numpy() for m in (helpers_dist.model_a(), helpers_dist.model_b())]  # encoders
    assert a["similarity"]["cka"][0][1] == pytest.approx(linear_cka_hand(*z), rel=1e-6)


def test_expressiveness_on_two_ranks_equals_one_process(runs):
    """Per-image encoder scores gathered in order, and the gradient refinement, which runs in one process's
    batches of --batch-size rows on every rank (18 rows: 8, 8 and 2): the same to 1e-9."""
    one, two = runs["one"][0] / "expressiveness", runs["two"][0] / "expressiveness"
    for name in ("leaderboard.csv", "target_sets.csv"):
        _frames_equal(one / name, two / name)
    a, b = _json(one / "expressiveness.json"), _json(two / "expressiveness.json")
    _numbers_equal(a, b)
    sets = a["models"][0]["sets"]
    assert [len(sets[k]["per_image"]["encoder_mse"]) for k in ("own", "real")] == [16, 32]
    assert all(len(s["per_image"]["refined_mse"]) == 6 for s in sets.values())


def test_support_set_build_on_two_ranks_picks_the_same_images(runs):
    a, b = (_json(runs[k][0] / "support" / "manifest.json") for k in ("one", "two"))
    assert len(a["indices"]) == 6 and a["indices"] == b["indices"]
    _numbers_equal(a, b)


def test_a_rank_dying_mid_run_leaves_no_output(tmp_path):
    args = ["-m", "latentmap", *FIT, "--out", str(tmp_path / "map")]
    args[args.index("py:tests.helpers.distributed:model_a")] = "py:tests.helpers.distributed:model_a_dying"
    run = _torchrun(args)
    assert run.returncode != 0 and "exitcode: 3" in run.stderr  # rank 1 died as planned, rank 0 stopped
    assert list(tmp_path.iterdir()) == []  # no map, no temporary folder
