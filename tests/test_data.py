"""Tests of hashplug.data: loaders (synthetic files, and the real files when present) and protocol splits."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import hashplug.data as hd
from hashplug.data import loaders
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
    path = data_dir / hd.DATA_FILES[name]
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
    """A CIFAR-10-format npz of smooth images; returns the original pooled pixels and labels."""
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
    return imgs.reshape(len(imgs), -1), y


def _write_fake_mnist(path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        y_train=np.arange(6, dtype=np.uint8),
        x_test=rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        y_test=np.array([7, 8, 9], dtype=np.uint8),
    )


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
    assert X.shape == (9, 784)


def test_default_data_dir_absent(monkeypatch, tmp_path):
    monkeypatch.delenv("HASHPLUG_DATA", raising=False)
    monkeypatch.setattr(loaders, "_data_dir_candidates", lambda: [tmp_path / "nope", tmp_path / "nada"])
    assert hd.default_data_dir() is None
    with pytest.raises(hd.DataFileError, match=r"no data directory.*--data PATH"):
        hd.default_data_path("cifar10")
    with pytest.raises(hd.DataFileError, match="known names"):
        hd.default_data_path("imagenet")


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
    assert X.shape == (9, 784) and X.dtype == np.uint8 and y.dtype == np.int64
    raw = np.load(path)
    np.testing.assert_array_equal(X[6].reshape(28, 28), raw["x_test"][0])
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
    assert X.shape == (1797, 64) and X.dtype == np.float32 and y.dtype == np.int64
    assert X.min() == 0 and X.max() == 16 and set(np.unique(y)) == set(range(10))
    X2, y2 = hd.load_dataset("digits")
    np.testing.assert_array_equal(X, X2)


def test_load_cifar10_synthetic_and_cache(tmp_path, monkeypatch):
    src = tmp_path / "cifar10_jpeg_q75.npz"
    orig, y_orig = _write_fake_cifar(src)
    cache = tmp_path / "cache"
    X, y = hd.load_cifar10(src, cache_dir=cache, progress=False)
    assert X.shape == (16, 3072) and X.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(y, y_orig)
    # decoded pixels are close to the originals (JPEG is lossy), and HWC-flattened
    assert np.abs(X.astype(int) - orig.astype(int)).mean() < 3
    files = list(cache.glob("cifar10_*.npy"))
    assert len(files) == 1

    # the second call reads the cache without decoding
    def boom(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(loaders, "_decode_cifar", boom)
    X2, y2 = hd.load_cifar10(src, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(X, X2)
    monkeypatch.undo()

    # a cache of the wrong shape is ignored with a warning and rewritten
    np.save(files[0], np.zeros((3, 3072), dtype=np.uint8))
    with pytest.warns(UserWarning, match="Ignoring cache"):
        X3, _ = hd.load_cifar10(src, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(X, X3)
    assert np.load(files[0]).shape == (16, 3072)
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
    assert X.shape == (16, 3072)


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
    with pytest.raises(hd.DataFileError, match="neither a known data set"):
        hd.load_dataset("imagenet")
    assert issubclass(hd.DataFileError, HashplugError) and issubclass(hd.DataFileError, ValueError)


# ---------------------------------------------------------------------------------------------------------
# the real files (skipped when shared/data is absent)


def test_real_mnist():
    X, y = hd.load_mnist(_real_file("mnist"))
    assert X.shape == (70000, 784) and X.dtype == np.uint8 and y.dtype == np.int64
    assert np.bincount(y).sum() == 70000 and np.bincount(y).min() > 6000 and y.max() == 9
    assert X.max() == 255
    s = hd.mnist_protocol(X, y, seed=0)
    assert (s.n_queries, s.n_db) == (1000, 69000)
    np.testing.assert_array_equal(np.bincount(s.yq), [100] * 10)


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
    assert X.shape == (5, 3072) and X.dtype == np.uint8
    assert y.tolist() == [0, 0, 9, 0, 9]  # both splits are sorted by class
    assert 30 < X.mean() < 225 and X.std() > 10
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_real_cifar10_full():
    path = _real_file("cifar10")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        X, y = hd.load_cifar10(path, progress=False)  # default cache: decodes once, then reads it
    assert X.shape == (60000, 3072) and X.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y), [6000] * 10)
    Xi, _ = hd.load_cifar10(path, indices=[0, 12345, 59999], progress=False)
    np.testing.assert_array_equal(Xi, X[[0, 12345, 59999]])
    s = hd.cifar10_protocol(X, y, seed=0)
    assert (s.n_queries, s.n_db) == (10000, 50000)
    means = X.reshape(-1, 32, 32, 3).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(means, [125.3, 123.0, 113.9], atol=3)  # the usual CIFAR-10 channel means
