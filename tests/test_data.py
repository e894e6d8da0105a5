"""Tests of hashplug.data: the registry, loaders (synthetic files, and the real files when present) and splits."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import hashplug.data as hd
from hashplug.data import _io, cifar10
from hashplug.validation import HashplugError

# ---------------------------------------------------------------------------------------------------------
# helpers


def _labels(sizes: list[int], seed: int = 0) -> np.ndarray:
    """Shuffled labels with ``sizes[c]`` samples of class ``c``."""
    y = np.repeat(np.arange(len(sizes)), sizes)
    return np.random.default_rng(seed).permutation(y)


def _real_file(name: str) -> Path:
    data_dir = hd.default_data_dir()
    if data_dir is None:
        pytest.skip("no shared/data directory next to the repository")
    path = data_dir / hd.get_dataset(name).file
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path


def _jpeg(img: np.ndarray, quality: int = 95) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _smooth_images(n: int, seed: int) -> np.ndarray:
    """(n, 32, 32, 3) uint8 images made of gradients, which JPEG reproduces closely."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32) / 31.0
    imgs = np.empty((n, 32, 32, 3), dtype=np.uint8)
    for i in range(n):
        a, b, c = rng.uniform(20, 230, size=(3, 3))
        imgs[i] = np.clip(
            a + (b - a)[None, None] * yy[..., None] * 0.3 + (c - a) * xx[..., None] * 0.3, 0, 255
        )
    return imgs


def _write_fake_cifar(path: Path, n_train: int = 12, n_test: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-10-format npz of smooth images; returns the original pooled pixels (n, 32, 32, 3) and labels."""
    imgs = _smooth_images(n_train + n_test, seed=1)
    y = np.arange(n_train + n_test) % 10
    arrays = {}
    for split, sl in (("train", slice(0, n_train)), ("test", slice(n_train, None))):
        blobs = [_jpeg(im) for im in imgs[sl]]
        arrays[f"{split}_jpeg"] = np.frombuffer(b"".join(blobs), dtype=np.uint8)
        arrays[f"{split}_offsets"] = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(
            np.int64
        )
        arrays[f"y_{split}"] = y[sl].astype(np.uint8)
    np.savez(path, **arrays)
    return imgs, y


def _write_fake_mnist(path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        y_train=np.arange(6, dtype=np.uint8),
        x_test=rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        y_test=np.array([7, 8, 9], dtype=np.uint8),
    )


def _old_flat_cifar(path: Path, idx: list[int]) -> np.ndarray:
    """The 0.1.0 decoding: each JPEG through Pillow as RGB, flattened row-major (HWC) to 3,072 values."""
    from PIL import Image

    with np.load(path) as z:
        parts = [(z[f"{s}_jpeg"], z[f"{s}_offsets"]) for s in ("train", "test")]
    n_train = len(parts[0][1]) - 1
    rows = []
    for i in idx:
        (jpeg, off), j = (parts[0], i) if i < n_train else (parts[1], i - n_train)
        with Image.open(io.BytesIO(jpeg[off[j] : off[j + 1]].tobytes())) as im:
            rows.append(np.asarray(im.convert("RGB")).reshape(-1))
    return np.stack(rows)


# ---------------------------------------------------------------------------------------------------------
# the registry


def test_registry_entries():
    assert list(hd.DATASETS) == ["digits", "mnist", "cifar10", "ag_news"]
    for name, ds in hd.DATASETS.items():
        assert ds.name == name and hd.get_dataset(name) is ds and hd.get_dataset(f" {name.upper()} ") is ds
        for alias in ds.aliases:
            assert hd.get_dataset(alias) is ds and hd.get_dataset(alias.upper()) is ds
        assert len(ds.axes) == len(ds.shape) and ds.n_features == int(np.prod(ds.shape))
        assert ds.scale > 0 and np.dtype(ds.dtype).kind in "uf" and ds.loader is not None
        if ds.protocol is not None:
            assert 0 < ds.protocol.per_class * ds.n_classes < ds.n_samples
    shapes = {name: (ds.shape, ds.dtype, ds.scale) for name, ds in hd.DATASETS.items()}
    assert shapes == {
        "digits": ((8, 8), "float32", 16.0),
        "mnist": ((28, 28), "uint8", 255.0),
        "cifar10": ((32, 32, 3), "uint8", 255.0),
        "ag_news": ((384,), "float32", 1.0),
    }
    assert hd.get_dataset("cifar10").axes == "HWC"
    # the 0.1.0 tables are views of the registry
    assert hd.DATA_FILES == {n: d.file for n, d in hd.DATASETS.items() if d.file}
    assert hd.PROTOCOLS == {"mnist": 100, "cifar10": 1000, "ag_news": 100}
    assert (hd.get_dataset("mnist").protocol.R, hd.get_dataset("cifar10").protocol.R) == (None, 1000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        hd.get_dataset("mnist").file = "other.npz"


def test_unknown_dataset_lists_the_available_ones():
    for call in (hd.get_dataset, hd.default_data_path, hd.load_dataset):
        with pytest.raises(hd.DataFileError) as err:
            call("imagenet")
        msg = str(err.value)
        assert "'imagenet'" in msg
        for name, ds in hd.DATASETS.items():
            assert name in msg and all(alias in msg for alias in ds.aliases), (call, msg)


def test_bundled_dataset_takes_no_path_and_has_no_protocol(tmp_path):
    ds = hd.get_dataset("digits")
    with pytest.raises(hd.DataFileError, match="takes no path or options"):
        ds.load(tmp_path / "x.npz")
    with pytest.raises(hd.DataFileError, match="takes no path or options"):
        hd.load_dataset("digits", indices=[0])
    X, y = ds.load()
    with pytest.raises(HashplugError, match="digits has no retrieval protocol; known protocols: mnist"):
        hd.protocol_split("digits", X, y)


@pytest.mark.parametrize("name", list(hd.DATASETS))
def test_every_entry_loads_in_its_natural_shape(name):
    """Each registry entry loads from its default file (when present): natural shape and dtype, flat agrees."""
    ds = hd.get_dataset(name)
    if ds.file is not None:
        _real_file(name)
    options = {"indices": [0, 1, 777, 49999, 50000, 59999], "progress": False} if name == "cifar10" else {}
    X, y = ds.load(**options)
    Xf, yf = hd.load_dataset(name, flat=True, **options)
    n = len(y)
    assert X.shape == (n, *ds.shape) and X.dtype == np.dtype(ds.dtype) and y.dtype == np.int64
    assert Xf.shape == (n, ds.n_features) and Xf.dtype == X.dtype and Xf.flags.c_contiguous
    np.testing.assert_array_equal(X.reshape(n, -1), Xf)
    np.testing.assert_array_equal(y, yf)
    assert np.abs(X).max() <= ds.scale and (ds.axes == "D" or X.max() > ds.scale / 2)
    if not options:
        assert n == ds.n_samples and np.unique(y).size == ds.n_classes


def test_flat_agrees_with_natural_on_synthetic_files(tmp_path):
    """Reference files are recognised by their name; ``natural.reshape(n, -1) == flat`` for each."""
    _write_fake_mnist(tmp_path / "mnist.npz")
    _write_fake_cifar(tmp_path / "cifar10_jpeg_q75.npz")
    np.savez(tmp_path / "ag_news_test_minilm.npz", emb=np.ones((5, 384), np.float16), y=np.arange(5) % 4)
    for name in ("mnist", "cifar10", "ag_news"):
        ds = hd.get_dataset(name)
        path = tmp_path / Path(ds.file).name
        options = {"use_cache": False, "progress": False} if name == "cifar10" else {}
        X, y = hd.load_dataset(path, **options)
        Xf, yf = hd.load_dataset(path, flat=True, **options)
        assert X.shape == (len(y), *ds.shape) and X.dtype == np.dtype(ds.dtype)
        assert Xf.shape == (len(y), ds.n_features) and Xf.dtype == X.dtype
        np.testing.assert_array_equal(X.reshape(len(y), -1), Xf)
        np.testing.assert_array_equal(y, yf)
    X, _ = hd.load_digits()
    np.testing.assert_array_equal(X.reshape(len(X), -1), hd.load_digits(flat=True)[0])


def test_cifar10_pixels_are_the_0_1_0_pixels_on_synthetic_file(tmp_path):
    src = tmp_path / "c.npz"
    _write_fake_cifar(src)
    idx = [0, 5, 11, 12, 15]
    old = _old_flat_cifar(src, idx)
    X, _ = hd.load_cifar10(src, indices=idx, progress=False)
    np.testing.assert_array_equal(hd.load_cifar10(src, indices=idx, progress=False, flat=True)[0], old)
    np.testing.assert_array_equal(X, old.reshape(-1, 32, 32, 3))
    full, _ = hd.load_cifar10(src, use_cache=False, progress=False, flat=True)
    np.testing.assert_array_equal(full[idx], old)


def test_protocol_split_keeps_the_natural_shape():
    y = _labels([7000] * 10)
    X = np.zeros((y.size, 28, 28), np.uint8)
    s = hd.mnist_protocol(X, y, seed=0)
    assert s.Xq.shape == (1000, 28, 28) and s.Xdb.shape == (69000, 28, 28)
    flat = hd.mnist_protocol(X.reshape(y.size, -1), y, seed=0)
    np.testing.assert_array_equal(flat.q_idx, s.q_idx)


# ---------------------------------------------------------------------------------------------------------
# protocol splits


def test_per_class_split_disjoint_cover_counts():
    y = _labels([30, 45, 60, 52, 41])
    q, db = hd.per_class_split(y, per_class=7, seed=0)
    assert q.dtype == np.int64 and db.dtype == np.int64
    assert np.intersect1d(q, db).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([q, db])), np.arange(y.size))
    assert (np.diff(q) > 0).all() and (np.diff(db) > 0).all()
    np.testing.assert_array_equal(np.bincount(y[q]), [7] * 5)
    np.testing.assert_array_equal(np.bincount(y[db]), np.array([30, 45, 60, 52, 41]) - 7)


def test_per_class_split_seeded():
    y = _labels([50] * 4)
    a = hd.per_class_split(y, 10, seed=1)
    b = hd.per_class_split(y, 10, seed=1)
    c = hd.per_class_split(y, 10, seed=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    # np.random.default_rng(seed) is the documented generator
    assert hd.per_class_split(y, 10, seed=np.int64(1))[0].tolist() == a[0].tolist()


def test_per_class_split_noncontiguous_labels():
    y = np.array([3, 3, 3, 9, 9, 9, -1, -1, -1, -1])
    q, db = hd.per_class_split(y, 2, seed=0)
    assert sorted(y[q].tolist()) == [-1, -1, 3, 3, 9, 9]
    assert db.size == 4


@pytest.mark.parametrize(
    ("y", "per_class", "seed", "match"),
    [
        (np.repeat([0, 1], [10, 3]), 5, 0, "class 1: 3"),
        (np.repeat([0, 1], [5, 5]), 5, 0, "no database"),
        (np.repeat([0, 1], [10, 10]), 0, 0, "per_class"),
        (np.repeat([0, 1], [10, 10]), 2, -1, "seed"),
        (np.repeat([0, 1], [10, 10]), 2, 1.5, "seed"),
        (np.repeat([0.5, 1.5], [10, 10]), 2, 0, "integer class labels"),
        (np.zeros((4, 2), dtype=int), 1, 0, "1-D"),
        (np.array([], dtype=int), 1, 0, "empty"),
    ],
)
def test_per_class_split_errors(y, per_class, seed, match):
    with pytest.raises(HashplugError, match=match):
        hd.per_class_split(y, per_class, seed)


@pytest.mark.parametrize(
    ("func", "sizes", "n_q", "n_db", "name"),
    [
        (hd.mnist_protocol, [7000] * 10, 1000, 69000, "mnist"),
        (hd.cifar10_protocol, [6000] * 10, 10000, 50000, "cifar10"),
        (hd.ag_news_protocol, [1900] * 4, 400, 7200, "ag_news"),
    ],
)
def test_named_protocols(func, sizes, n_q, n_db, name):
    y = _labels(sizes)
    X = np.arange(y.size, dtype=np.int64)[:, None] * np.array([[1, -1]])
    s = func(X, y, seed=5)
    assert (s.n_queries, s.n_db, s.name, s.seed) == (n_q, n_db, name, 5)
    assert s.Xq.shape == (n_q, 2) and s.Xdb.shape == (n_db, 2) and s.Xq.dtype == X.dtype
    np.testing.assert_array_equal(s.Xq, X[s.q_idx])
    np.testing.assert_array_equal(s.Xdb, X[s.db_idx])
    np.testing.assert_array_equal(s.yq, y[s.q_idx])
    np.testing.assert_array_equal(s.ydb, y[s.db_idx])
    assert np.unique(np.bincount(s.yq)).tolist() == [n_q // len(sizes)]
    assert np.union1d(s.q_idx, s.db_idx).size == y.size and np.intersect1d(s.q_idx, s.db_idx).size == 0
    assert "Split(" in repr(s) and "array" not in repr(s)


def test_protocol_split_by_name_and_errors():
    y = _labels([1900] * 4)
    X = np.zeros((y.size, 3), dtype=np.float32)
    assert hd.protocol_split("AG-News", X, y, seed=0).n_queries == 400
    with pytest.raises(HashplugError, match="Unknown protocol"):
        hd.protocol_split("imagenet", X, y)
    with pytest.raises(HashplugError, match="must match"):
        hd.mnist_protocol(X[:-1], y)


def test_validation_split_from_split():
    y = _labels([300] * 4, seed=3)
    X = np.arange(y.size)[:, None].astype(np.float32)
    split = hd.ag_news_protocol(X, y, seed=0)
    v = hd.validation_split(split, per_class=20, seed=1)
    assert v.name == "ag_news-val" and v.n_queries == 80 and v.n_db == split.n_db - 80
    # validation queries and database come from the training part only, and cover it
    assert np.intersect1d(v.q_idx, split.q_idx).size == 0
    assert np.intersect1d(v.db_idx, split.q_idx).size == 0
    np.testing.assert_array_equal(np.union1d(v.q_idx, v.db_idx), split.db_idx)
    # indices refer to the pooled array
    np.testing.assert_array_equal(v.Xq, X[v.q_idx])
    np.testing.assert_array_equal(v.ydb, y[v.db_idx])
    np.testing.assert_array_equal(np.bincount(v.yq), [20] * 4)


def test_validation_split_from_arrays():
    y = _labels([40, 60], seed=4)
    X = np.random.default_rng(0).normal(size=(100, 3))
    v = hd.validation_split(X, y, 10, 7)
    assert v.name == "val" and v.n_queries == 20 and v.n_db == 80
    np.testing.assert_array_equal(v.Xq, X[v.q_idx])
    np.testing.assert_array_equal(hd.validation_split(X, y, 10, 7).q_idx, v.q_idx)
    with pytest.raises(HashplugError, match="y is None"):
        hd.validation_split(X)
    with pytest.raises(HashplugError, match="not both"):
        hd.validation_split(v, y)


# ---------------------------------------------------------------------------------------------------------
# locations


def test_default_data_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HASHPLUG_DATA", str(tmp_path))
    assert hd.default_data_dir() == tmp_path
    with pytest.raises(hd.DataFileError, match=r"--data PATH") as err:
        hd.default_data_path("mnist")
    assert str(tmp_path / "mnist" / "mnist.npz") in str(err.value)
    (tmp_path / "mnist").mkdir()
    _write_fake_mnist(tmp_path / "mnist" / "mnist.npz")
    assert hd.default_data_path("MNIST") == tmp_path / "mnist" / "mnist.npz"
    X, y = hd.load_dataset("mnist")
    assert X.shape == (9, 28, 28)
    assert hd.load_dataset("mnist", flat=True)[0].shape == (9, 784)


def test_default_data_dir_absent(monkeypatch, tmp_path):
    monkeypatch.delenv("HASHPLUG_DATA", raising=False)
    monkeypatch.setattr(_io, "_data_dir_candidates", lambda: [tmp_path / "nope", tmp_path / "nada"])
    assert hd.default_data_dir() is None
    with pytest.raises(hd.DataFileError, match=r"no data directory.*--data PATH"):
        hd.default_data_path("cifar10")
    with pytest.raises(hd.DataFileError, match="available datasets: digits, mnist, cifar10"):
        hd.default_data_path("imagenet")
    with pytest.raises(hd.DataFileError, match="digits has no data file"):
        hd.default_data_path("digits")


def test_default_data_dir_relative_discovery(monkeypatch, tmp_path):
    monkeypatch.delenv("HASHPLUG_DATA", raising=False)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    assert hd.default_data_dir() == (tmp_path / "shared" / "data").resolve()


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("HASHPLUG_CACHE", str(tmp_path / "c"))
    assert hd.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("HASHPLUG_CACHE")
    assert hd.default_cache_dir() == Path.home() / ".cache" / "hashplug"


def test_import_is_light():
    code = (
        "import sys, hashplug\n"
        "before = set(sys.modules)\n"
        "import hashplug.data\n"
        "new = set(sys.modules) - before\n"
        "heavy = [m for m in ('PIL', 'sklearn', 'torch', 'onnx') if m in sys.modules or m in new]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------------------
# reference loaders on synthetic files


def test_load_mnist_synthetic(tmp_path):
    path = tmp_path / "mnist.npz"
    _write_fake_mnist(path)
    X, y = hd.load_mnist(path)
    assert X.shape == (9, 28, 28) and X.dtype == np.uint8 and y.dtype == np.int64
    raw = np.load(path)
    np.testing.assert_array_equal(X[6], raw["x_test"][0])
    np.testing.assert_array_equal(hd.load_mnist(path, flat=True)[0], X.reshape(9, 784))
    # images stored flattened load in their natural shape too
    np.savez(path, **{k: (v.reshape(len(v), -1) if k.startswith("x") else v) for k, v in raw.items()})
    np.testing.assert_array_equal(hd.load_mnist(path)[0], X)
    assert y.tolist() == list(range(10))[:6] + [7, 8, 9]


def test_load_mnist_wrong_file(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, emb=np.zeros((3, 4)), y=np.zeros(3))
    with pytest.raises(hd.DataFileError, match=r"no array 'x_train'.*'emb'"):
        hd.load_mnist(path)
    with pytest.raises(hd.DataFileError, match="does not exist"):
        hd.load_mnist(tmp_path / "missing.npz")
    with pytest.raises(hd.DataFileError, match="is a directory"):
        hd.load_mnist(tmp_path)


def test_load_ag_news_synthetic(tmp_path):
    path = tmp_path / "ag.npz"
    np.savez(path, emb=np.ones((5, 8), dtype=np.float16), y=np.array([0, 1, 2, 3, 0], dtype=np.uint8))
    X, y = hd.load_ag_news(path)
    assert X.dtype == np.float32 and X.shape == (5, 8) and y.dtype == np.int64
    np.savez(path, emb=np.ones((5, 8), dtype=np.float16), y=np.zeros(4, dtype=np.uint8))
    with pytest.raises(hd.DataFileError, match=r"expected \(5,\)"):
        hd.load_ag_news(path)


def test_load_digits():
    X, y = hd.load_digits()
    assert X.shape == (1797, 8, 8) and X.dtype == np.float32 and y.dtype == np.int64
    assert X.min() == 0 and X.max() == 16 and set(np.unique(y)) == set(range(10))
    X2, y2 = hd.load_dataset("digits")
    np.testing.assert_array_equal(X, X2)


def test_load_digits_reads_scikit_learns_file_as_it_does_without_importing_it(monkeypatch):
    """The digits come from scikit-learn's bundled file, read without importing scikit-learn (1.4 s of every
    process that trains on them); the arrays are exactly ``sklearn.datasets.load_digits``'s, and without the
    file its loader is used."""
    sk = pytest.importorskip("sklearn.datasets")
    code = "import sys; from hashplug.data import load_digits; load_digits(); print('sklearn' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr[-2000:]
    X, y = hd.load_digits(flat=True)
    d = sk.load_digits()
    np.testing.assert_array_equal(X, d.data.astype(np.float32))
    np.testing.assert_array_equal(y, d.target)
    from hashplug.data import digits

    monkeypatch.setattr(digits, "_read_bundled_digits", lambda: (None, None))
    X3, y3 = hd.load_digits(flat=True)
    np.testing.assert_array_equal(X3, X)
    np.testing.assert_array_equal(y3, y)


def test_load_cifar10_synthetic_and_cache(tmp_path, monkeypatch):
    src = tmp_path / "cifar10_jpeg_q75.npz"
    orig, y_orig = _write_fake_cifar(src)
    cache = tmp_path / "cache"
    X, y = hd.load_cifar10(src, cache_dir=cache, progress=False)
    assert X.shape == (16, 32, 32, 3) and X.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(y, y_orig)
    # decoded pixels are close to the originals (JPEG is lossy), height x width x RGB
    assert np.abs(X.astype(int) - orig.astype(int)).mean() < 3
    files = list(cache.glob("cifar10_*.npy"))
    assert len(files) == 1 and files[0].name.endswith(f"_v{cifar10._CACHE_VERSION}.npy")

    # the second call reads the cache without decoding
    def boom(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(cifar10, "_decode_cifar", boom)
    X2, y2 = hd.load_cifar10(src, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(
        hd.load_cifar10(src, cache_dir=cache, progress=False, flat=True)[0], X.reshape(16, -1)
    )
    monkeypatch.undo()

    # a cache of the wrong shape is ignored with a warning and rewritten
    np.save(files[0], np.zeros((3, 3072), dtype=np.uint8))
    with pytest.warns(UserWarning, match="Ignoring cache"):
        X3, _ = hd.load_cifar10(src, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(X, X3)
    assert np.load(files[0]).shape == (16, 32, 32, 3)
    # a 0.1.0 cache, (n, 3072) under the v1 name, is never read: the v2 layout has its own name
    np.save(files[0].with_name(files[0].name.replace("_v2.npy", "_v1.npy")), np.zeros((16, 3072), np.uint8))
    files[0].unlink()
    X5, _ = hd.load_cifar10(src, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(X, X5)
    assert sorted(f.name[-7:] for f in cache.glob("cifar10_*.npy")) == ["_v1.npy", "_v2.npy"]
    # a corrupt cache likewise
    files[0].write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="corrupt cache"):
        X4, _ = hd.load_cifar10(src, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(X, X4)

    # the environment variable picks the cache directory
    monkeypatch.setenv("HASHPLUG_CACHE", str(tmp_path / "envcache"))
    hd.load_cifar10(src, progress=False)
    assert len(list((tmp_path / "envcache").glob("cifar10_*.npy"))) == 1


def test_load_cifar10_indices_and_no_cache(tmp_path):
    src = tmp_path / "c.npz"
    _write_fake_cifar(src)
    cache = tmp_path / "cache"
    X, y = hd.load_cifar10(src, cache_dir=cache, use_cache=False, progress=False)
    assert not cache.exists()
    Xi, yi = hd.load_cifar10(src, indices=[15, 0, 12], cache_dir=cache, progress=False)
    np.testing.assert_array_equal(Xi, X[[15, 0, 12]])
    np.testing.assert_array_equal(yi, y[[15, 0, 12]])
    assert not cache.exists()
    with pytest.raises(hd.DataFileError, match=r"indices must lie in \[0, 15\]"):
        hd.load_cifar10(src, indices=[16], progress=False)


def test_load_cifar10_unwritable_cache_warns(tmp_path):
    src = tmp_path / "c.npz"
    _write_fake_cifar(src)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.warns(UserWarning, match="Could not write"):
        X, _ = hd.load_cifar10(src, cache_dir=blocker / "sub", progress=False)
    assert X.shape == (16, 32, 32, 3)


def test_load_cifar10_corrupt(tmp_path):
    src = tmp_path / "c.npz"
    _write_fake_cifar(src)
    arrays = dict(np.load(src))
    jpeg = arrays["train_jpeg"].copy()
    off = arrays["train_offsets"]
    jpeg[off[3] : off[4]] = 0  # wipe image 3
    np.savez(src, **{**arrays, "train_jpeg": jpeg})
    with pytest.raises(hd.DataFileError, match="image 3 of the train split is not a valid JPEG"):
        hd.load_cifar10(src, use_cache=False, progress=False)
    np.savez(src, **{**arrays, "train_offsets": off[:-1]})
    with pytest.raises(hd.DataFileError, match="inconsistent|expected"):
        hd.load_cifar10(src, use_cache=False, progress=False)
    np.savez(src, **{k: v for k, v in arrays.items() if k != "y_test"})
    with pytest.raises(hd.DataFileError, match="no array 'y_test'"):
        hd.load_cifar10(src, use_cache=False, progress=False)


# ---------------------------------------------------------------------------------------------------------
# load_array


def test_load_array_npy(tmp_path):
    a = np.arange(24, dtype=np.float64).reshape(4, 2, 3)
    np.save(tmp_path / "a.npy", a)
    X, y = hd.load_array(tmp_path / "a.npy")
    assert X.shape == (4, 6) and X.dtype == np.float64 and y is None
    np.testing.assert_array_equal(hd.load_array(tmp_path / "a.npy", flat=False)[0], a)
    np.testing.assert_array_equal(hd.load_dataset(tmp_path / "a.npy")[0], a)  # stored shape by default
    np.testing.assert_array_equal(hd.load_dataset(tmp_path / "a.npy", flat=True)[0], X)
    np.save(tmp_path / "b.npy", np.arange(5))
    with pytest.raises(hd.DataFileError, match=r"shape \(5,\)"):
        hd.load_array(tmp_path / "b.npy")
    with pytest.raises(hd.DataFileError, match="no keys"):
        hd.load_array(tmp_path / "a.npy", x_key="X")


def test_load_array_npz_keys(tmp_path):
    rng = np.random.default_rng(0)
    X0 = rng.normal(size=(6, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", X=X0, y=np.array([0, 1, 0, 1, 2, 2], dtype=np.uint8))
    X, y = hd.load_array(str(tmp_path / "d.npz"))
    np.testing.assert_array_equal(X, X0)
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 0, 1, 2, 2]

    np.savez(tmp_path / "e.npz", feats=X0, lab=np.arange(6.0), other=np.zeros(2))
    X, y = hd.load_array(tmp_path / "e.npz", x_key="feats", y_key="lab")
    assert y.tolist() == list(range(6))
    with pytest.raises(hd.DataFileError, match=r"pass x_key"):
        hd.load_array(tmp_path / "e.npz")
    with pytest.raises(hd.DataFileError, match=r"no array 'vecs'.*'feats'"):
        hd.load_array(tmp_path / "e.npz", x_key="vecs")
    with pytest.raises(hd.DataFileError, match=r"no array 'labels'"):
        hd.load_array(tmp_path / "e.npz", x_key="feats", y_key="labels")
    with pytest.raises(hd.DataFileError, match="must be integers"):
        np.savez(tmp_path / "f.npz", X=X0, y=np.linspace(0, 1, 6))
        hd.load_array(tmp_path / "f.npz")

    # a single unnamed-role array is taken as the data
    np.savez(tmp_path / "g.npz", vecs=X0)
    X, y = hd.load_array(tmp_path / "g.npz")
    assert X.shape == (6, 4) and y is None
    # load_dataset dispatches paths to load_array
    X, y = hd.load_dataset(tmp_path / "d.npz")
    assert X.shape == (6, 4) and y.shape == (6,)


def test_load_array_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    vecs = np.arange(12, dtype=np.float64).reshape(4, 3)
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), 3)
    pq.write_table(
        pa.table({"id": [1, 2, 3, 4], "vector": fixed, "label": [0, 1, 1, 0]}), tmp_path / "f.parquet"
    )
    X, y = hd.load_array(tmp_path / "f.parquet")
    assert X.dtype == np.float32 and X.shape == (4, 3) and y.dtype == np.int64
    np.testing.assert_array_equal(X, vecs)
    assert y.tolist() == [0, 1, 1, 0]

    pq.write_table(pa.table({"emb": [[1.0, 2.0], [3.0, 4.0]], "text": ["a", "b"]}), tmp_path / "v.parquet")
    X, y = hd.load_array(tmp_path / "v.parquet")
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])
    assert y is None
    with pytest.raises(hd.DataFileError, match="must be integers"):
        hd.load_array(tmp_path / "v.parquet", y_key="text")
    with pytest.raises(hd.DataFileError, match=r"no column 'nope'.*'emb'"):
        hd.load_array(tmp_path / "v.parquet", x_key="nope")
    with pytest.raises(hd.DataFileError, match="expected a column of"):
        hd.load_array(tmp_path / "v.parquet", x_key="text")

    pq.write_table(pa.table({"emb": [[1.0, 2.0], [3.0]]}), tmp_path / "r.parquet")
    with pytest.raises(hd.DataFileError, match="different lengths"):
        hd.load_array(tmp_path / "r.parquet")
    pq.write_table(pa.table({"a": [[1.0]], "b": [[2.0]]}), tmp_path / "two.parquet")
    with pytest.raises(hd.DataFileError, match="pass x_key"):
        hd.load_array(tmp_path / "two.parquet")
    X, _ = hd.load_array(tmp_path / "two.parquet", x_key="b")
    assert X.tolist() == [[2.0]]


@pytest.mark.parametrize("name", ["bad.npz", "bad.npy", "bad.parquet"])
def test_load_array_corrupt(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not a data file at all" * 10)
    with pytest.raises(hd.DataFileError, match=r"Cannot read .*bad\."):
        hd.load_array(path)


def test_load_array_truncated_npz(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, X=np.zeros((100, 10)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(hd.DataFileError, match="corrupt"):
        hd.load_array(path)


def test_load_array_wrong_extension_and_missing(tmp_path):
    (tmp_path / "x.csv").write_text("1,2\n3,4\n")
    with pytest.raises(hd.DataFileError, match=r"Unsupported data file .*x\.csv"):
        hd.load_array(tmp_path / "x.csv")
    with pytest.raises(hd.DataFileError, match=r"missing\.npz does not exist"):
        hd.load_array(tmp_path / "missing.npz")
    with pytest.raises(hd.DataFileError, match="neither a known dataset.*available: digits, mnist"):
        hd.load_dataset("imagenet")
    assert issubclass(hd.DataFileError, HashplugError) and issubclass(hd.DataFileError, ValueError)


# ---------------------------------------------------------------------------------------------------------
# the real files (skipped when shared/data is absent)


def test_real_mnist():
    X, y = hd.load_mnist(_real_file("mnist"))
    assert X.shape == (70000, 28, 28) and X.dtype == np.uint8 and y.dtype == np.int64
    assert np.bincount(y).sum() == 70000 and np.bincount(y).min() > 6000 and y.max() == 9
    assert X.max() == 255
    s = hd.mnist_protocol(X, y, seed=0)
    assert (s.n_queries, s.n_db) == (1000, 69000)
    np.testing.assert_array_equal(np.bincount(s.yq), [100] * 10)
    assert s.Xq.shape == (1000, 28, 28)


def test_real_ag_news():
    X, y = hd.load_ag_news(_real_file("ag_news"))
    assert X.shape == (7600, 384) and X.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(y), [1900] * 4)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-2)
    s = hd.ag_news_protocol(X, y, seed=0)
    assert (s.n_queries, s.n_db) == (400, 7200)


def test_real_cifar10_few_images(tmp_path):
    path = _real_file("cifar10")
    idx = [0, 1, 49999, 50000, 59999]
    X, y = hd.load_cifar10(path, indices=idx, cache_dir=tmp_path / "cache", progress=False)
    assert X.shape == (5, 32, 32, 3) and X.dtype == np.uint8
    assert y.tolist() == [0, 0, 9, 0, 9]  # both splits are sorted by class
    assert 30 < X.mean() < 225 and X.std() > 10
    assert not (tmp_path / "cache").exists()


def test_real_cifar10_pixels_are_the_0_1_0_pixels():
    """Natural (n, 32, 32, 3) images hold exactly the pixels 0.1.0 returned flattened (HWC, RGB)."""
    path = _real_file("cifar10")
    idx = [0, 1, 4321, 49999, 50000, 55555, 59999]
    old = _old_flat_cifar(path, idx)
    X, _ = hd.load_cifar10(path, indices=idx, progress=False)
    np.testing.assert_array_equal(X.reshape(len(idx), -1), old)
    np.testing.assert_array_equal(X[:, 3, 5], old.reshape(-1, 32, 32, 3)[:, 3, 5])


@pytest.mark.slow
def test_real_cifar10_full():
    path = _real_file("cifar10")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        X, y = hd.load_cifar10(path, progress=False)  # default cache: decodes once, then reads it
    assert X.shape == (60000, 32, 32, 3) and X.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y), [6000] * 10)
    assert len(y) == hd.get_dataset("cifar10").n_samples
    Xi, _ = hd.load_cifar10(path, indices=[0, 12345, 59999], progress=False)
    np.testing.assert_array_equal(Xi, X[[0, 12345, 59999]])
    s = hd.cifar10_protocol(X, y, seed=0)
    assert (s.n_queries, s.n_db) == (10000, 50000)
    means = X.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(means, [125.3, 123.0, 113.9], atol=3)  # the usual CIFAR-10 channel means
