"""Scale and speed: chunked statistics, the decode rows of the information gain, synthetic datasets, cycle-free relocation,
precision and loader workers."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from latentmap import batching, device as device_mod
from latentmap.errors import ConfigError, NonFiniteError
from latentmap.stats import CHUNK_ROWS, Moments


# --------------------------------------------------------------------------- Moments in chunks

@pytest.mark.parametrize("full", [True, False])
def test_moments_in_chunks_match_numpy_float64_with_large_means(full):
    g = torch.Generator().manual_seed(0)
    n = 2 * CHUNK_ROWS + 123  # several chunks and a short one
    x = (torch.randn(n, 9, generator=g) * torch.linspace(0.01, 3, 9) + 1e4).float()
    y = torch.randn(n, 4, generator=g, dtype=torch.float64) * 2 - 300
    m = Moments(full).update(x[:5], y[:5]).update(x[5:], y[5:])
    xd, yd = x.double().numpy(), y.numpy()
    xc, yc = xd - xd.mean(0), yd - yd.mean(0)
    np.testing.assert_allclose(m.mean_x.numpy(), xd.mean(0), rtol=1e-14)
    ref = xc.T @ xc if full else (xc * xc).sum(0)
    np.testing.assert_allclose(m.cxx.numpy(), ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())
    np.testing.assert_allclose(m.cxy.numpy(), xc.T @ yc, rtol=1e-9, atol=1e-9 * np.abs(xc.T @ yc).max())
    np.testing.assert_allclose(m.cyy.numpy(), (yc * yc).sum(0), rtol=1e-12)
    assert m.n == n


def test_moments_refuse_non_finite_chunks_before_touching_the_state():
    m = Moments(full=True).update(torch.ones(3, 2) * torch.arange(3.0)[:, None], torch.zeros(3, 1))
    before = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in m.state().items()}
    bad = torch.zeros(4, 1)
    bad[2, 0] = float("nan")
    with pytest.raises(NonFiniteError) as err:
        m.update(torch.ones(4, 2), bad, check_finite=True)
    assert err.value.operand == "y"
    for k, v in m.state().items():
        assert (torch.equal(v, before[k]) if isinstance(v, torch.Tensor) else v == before[k])


def test_linear_map_fit_streams_without_whole_float64_copies():
    """fit on 200,000 x (150 + 512) float32 pairs allocates chunk-sized float64 buffers only."""
    import os
    import subprocess
    import sys

    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux's /proc/self/clear_refs")
    code = (
        "import torch, resource\n"
        "from latentmap.maps.linear import LinearMap\n"
        "x = torch.randn(60000, 150); y = torch.randn(60000, 512)\n"
        "LinearMap().fit(x[:5000], y[:5000])\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "def rss(f):\n"
        "    return [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(f)][0]\n"
        "before = rss('VmRSS'); LinearMap().fit(x, y); print((rss('VmHWM') - before) / 1024)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    extra_mib = float(out.stdout.strip())
    input_mib = 60000 * 662 * 4 / 2**20  # 151 MiB; whole float64 copies alone would be 303 MiB
    assert extra_mib < 0.5 * input_mib, extra_mib


# --------------------------------------------------------------------------- the decode chunk

def test_decode_rows_come_from_the_image_size_and_device_type_only():
    """The rows per decode call: the budget over one row's activations, a power of two, never a timing."""
    from types import SimpleNamespace

    from latentmap.support import info_gain as ig

    def rows(shape, device="cpu"):
        return ig.decode_rows(SimpleNamespace(image_shape=shape), torch.device(device))

    # 1x28x28: 784 pixels * 4 bytes * 64 = 200,704 bytes a row; 32 MiB / that = 167 -> 128; 2 GiB -> 10,699 -> 8192
    assert rows((1, 28, 28)) == 128 and rows((1, 28, 28), "cuda") == 8192
    assert rows((3, 64, 64)) == ig.MIN_DECODE_ROWS == 16  # 3 MiB a row: the floor
    assert rows((1, 2, 2), "cuda") == ig.MAX_DECODE_ROWS  # tiny images: the ceiling
    assert [rows((1, 28, 28)) for _ in range(3)] == [128] * 3


def test_information_gain_decodes_in_calls_of_the_rule_rows(tiny_vae_checkpoint, monkeypatch):
    """Every decode call of a batch takes the rule's rows from the batch's first variant (the last call of a
    batch what is left), however long the run takes; the gains are recorded with how they were computed."""
    from latentmap import load_model
    from latentmap.data.datasets import load_dataset
    from latentmap.support import info_gain as ig

    model = load_model(tiny_vae_checkpoint, device="cpu")
    calls = []
    decode = model.decode
    monkeypatch.setattr(model, "decode", lambda z, *a, **k: calls.append(len(z)) or decode(z, *a, **k))
    monkeypatch.setattr(ig, "decode_rows", lambda m, device=None: 50)
    info = ig.information_gain(model, load_dataset("synthetic:30", "all"), batch_size=20)
    per_batch = [20 * 9, 10 * 9]  # d = 8: 9 variants an image; batches of 20 and 10 images
    assert calls == [r for n in per_batch for r in [50] * (n // 50) + ([n % 50] if n % 50 else [])]
    record = info.to_dict()
    assert (record["batch_size"], record["decode_rows"], record["threads"]) == (20, 50, torch.get_num_threads())
    assert record["images"] == 30


# --------------------------------------------------------------------------- synthetic datasets

def test_synthetic_images_are_seeded_per_index_and_never_stored():
    from latentmap.data.datasets import load_dataset

    ds = load_dataset("synthetic:200000x64x64x3", "train")
    assert len(ds) == 160000 and ds.image_shape == (3, 64, 64) and ds.lazy and ds.labels is None
    a = ds.batch([5, 70000])
    b = ds.batch([70000])
    assert a.shape == (2, 3, 64, 64) and a.dtype == torch.float32 and 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a[1], b[0]) and not torch.equal(a[0], a[1])
    test = load_dataset("synthetic:200000x64x64x3", "test")
    assert len(test) == 40000 and not set(test.ids.tolist()) & set(ds.ids[:1000].tolist())
    other = load_dataset("synthetic:200000x64x64x3?seed=1", "train")
    assert not torch.equal(other.batch([5]), a[:1])
    assert load_dataset("synthetic:10", "all").image_shape == (1, 28, 28)
    assert load_dataset("synthetic:10x32x16", "all").image_shape == (1, 32, 16)


@pytest.mark.parametrize("spec", ["synthetic:", "synthetic:0", "synthetic:10x5", "synthetic:10x8x8x2",
                                  "synthetic:abc", "synthetic:10?seed=x", "synthetic:10?size=3"])
def test_bad_synthetic_specs_are_config_errors(spec):
    from latentmap.data.datasets import load_dataset

    with pytest.raises(ConfigError):
        load_dataset(spec, "all")


def test_loader_workers_give_the_same_batches():
    from latentmap.data.datasets import load_dataset

    ds = load_dataset("synthetic:300x16x16x3", "all").subset(np.arange(7, 207))
    assert batching.loader_workers(torch.zeros(3, 1, 2, 2)) == 0
    try:
        batching.set_loader_workers(2)
        assert batching.loader_workers(ds) == 2
        loaded, total = batching.image_batches(ds, 64)
        loaded = list(loaded)
    finally:
        batching.set_loader_workers(None)
    plain = list(ds.iter_batches(64))
    assert total == 4 and len(loaded) == 4
    assert all(torch.equal(a, b) for a, b in zip(loaded, plain))


# --------------------------------------------------------------------------- relocation without the cycle

def test_relocation_without_cycle_keeps_every_other_metric(tiny_vae_checkpoint):
    from latentmap import load_model
    from latentmap.data.datasets import load_dataset
    from latentmap.evaluation.relocation import evaluate_relocation
    from latentmap.maps.linear import LinearMap

    a = load_model(tiny_vae_checkpoint, device="cpu")
    data = load_dataset("fashion-mnist", "test").evenly_spaced_subset(120)
    z = a.encode_all(data)
    m = LinearMap().fit(z, z)
    on = evaluate_relocation(a, a, m, data, batch_size=50, lpips="off")
    off = evaluate_relocation(a, a, m, data, batch_size=50, lpips="off", cycle=False)
    assert on.cycle_mse is not None and off.cycle_mse is None and off.cycle_ratio is None
    for key in ("source_mse", "target_mse", "relocated_mse", "ratio", "latent_r2", "relocated_ssim"):
        assert getattr(off, key) == pytest.approx(getattr(on, key), rel=1e-9)


def test_atlas_shares_own_reconstructions_and_matches_pair_evaluation(tiny_vae_checkpoint, tmp_path):
    from latentmap import load_model
    from latentmap.data.datasets import load_dataset
    from latentmap.evaluation.atlas import build_atlas
    from latentmap.evaluation.relocation import evaluate_relocation
    from latentmap.maps.fitting import FitSource

    a = load_model(tiny_vae_checkpoint, device="cpu")
    b = load_model(tiny_vae_checkpoint, device="cpu")
    b.name = "other"
    fit_data = load_dataset("fashion-mnist", "train").evenly_spaced_subset(200)
    test = load_dataset("fashion-mnist", "test").evenly_spaced_subset(80)
    calls = {"decode": 0}
    original = type(a)._decode

    def counting(self, z):
        calls["decode"] += len(z)
        return original(self, z)

    type(a)._decode = counting
    try:
        atlas = build_atlas([a, b], test, FitSource("dataset", len(fit_data), data=fit_data), batch_size=40,
                            lpips="off", cycle=False, bootstrap=10)
    finally:
        type(a)._decode = original
    # 2 own reconstructions + 2 relocations per test image, no cycle
    assert calls["decode"] == 4 * len(test)
    r = next(r for r in atlas.results if r.source == a.name)
    single = evaluate_relocation(a, b, atlas.maps[(a.name, b.name)], test, batch_size=40, lpips="off", cycle=False)
    for key in ("target_mse", "relocated_mse", "target_ssim", "ratio"):
        assert getattr(r, key) == pytest.approx(getattr(single, key), rel=1e-9)


# --------------------------------------------------------------------------- precision and the CLI options

def test_bf16_precision_is_cuda_only_and_validated(tiny_vae_checkpoint):
    from latentmap import load_model

    model = load_model(tiny_vae_checkpoint, device="cpu")
    x = torch.rand(4, *model.image_shape)
    ref = model.decode(model.encode(x))
    try:
        device_mod.set_precision("bf16")
        out = model.decode(model.encode(x))
        with pytest.raises(ConfigError):
            device_mod.set_precision("fp16")
    finally:
        device_mod.set_precision("fp32")
    assert out.dtype == torch.float32 and torch.equal(out, ref)  # a CPU keeps fp32


@pytest.mark.gpu
def test_bf16_autocast_on_cuda_keeps_float32_outputs(tiny_vae_checkpoint):
    from latentmap import load_model

    model = load_model(tiny_vae_checkpoint, device="cuda")
    x = torch.rand(8, *model.image_shape)
    ref = model.decode(model.encode(x))
    try:
        device_mod.set_precision("bf16")
        out = model.decode(model.encode(x))
    finally:
        device_mod.set_precision("fp32")
    assert out.dtype == torch.float32 and float((out - ref).abs().max()) < 0.05


def test_cli_takes_precision_and_cycle_options():
    from latentmap.cli.main import main

    for command in (["map", "eval"], ["map", "atlas"]):
        out = CliRunner().invoke(main, [*command, "--help"]).output
        assert "--precision [fp32|bf16]" in out and "--cycle / --no-cycle" in out
    bad = CliRunner().invoke(main, ["map", "fit", "--source", "a", "--target", "b", "--precision", "fp8"])
    assert bad.exit_code == 2 and "fp8" in bad.output


def test_separable_ssim_equals_the_two_dimensional_window():
    from latentmap.evaluation.metrics import _gaussian_window, per_image_ssim

    def reference(x, y, size, sigma=1.5, c1=0.01 ** 2, c2=0.03 ** 2):
        w = _gaussian_window(size, sigma, x.shape[1], x.device, x.dtype)

        def f(t):
            return torch.nn.functional.conv2d(t, w, groups=x.shape[1])

        xc, yc = x - x.mean(dim=(2, 3), keepdim=True), y - y.mean(dim=(2, 3), keepdim=True)
        mu_x, mu_y, mxc, myc = f(x), f(y), f(xc), f(yc)
        vx, vy, cov = f(xc * xc) - mxc ** 2, f(yc * yc) - myc ** 2, f(xc * yc) - mxc * myc
        ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (vx + vy + c2))
        return ssim.flatten(1).mean(1)

    g = torch.Generator().manual_seed(0)
    for shape, size in [((5, 1, 28, 28), 11), ((3, 3, 64, 64), 11), ((2, 1, 8, 8), 7)]:
        x = torch.rand(shape, generator=g)
        y = (x + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1)
        torch.testing.assert_close(per_image_ssim(x, y), reference(x, y, size), rtol=0, atol=1e-6)


def test_torch_chunk_path_of_moments_equals_the_numpy_path(monkeypatch):
    """The path CUDA tensors take (torch, chunk by chunk) gives the CPU path's statistics."""
    import latentmap.stats as stats

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(3 * CHUNK_ROWS + 7, 5, generator=g) + 40, torch.randn(3 * CHUNK_ROWS + 7, 3, generator=g)
    cpu = Moments(full=True).update(x[:100], y[:100]).update(x[100:], y[100:])
    monkeypatch.setattr(stats, "_numpy_ok", lambda t: False)
    other = Moments(full=True).update(x[:100], y[:100]).update(x[100:], y[100:])
    for key in ("mean_x", "cxx", "mean_y", "cxy", "cyy"):
        torch.testing.assert_close(getattr(other, key), getattr(cpu, key), rtol=1e-11, atol=1e-9)
