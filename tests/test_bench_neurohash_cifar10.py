"""``hashplug bench neurohash-cifar10`` on a tiny fake CIFAR-10 file: JSON shape, splits, reference rows."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("scipy")
Image = pytest.importorskip("PIL.Image")

from hashplug.cli import main as cli_main  # noqa: E402


def _fake_cifar(path, n_train=300, n_test=200):
    """Colour images whose class sets a colour and a stripe direction (learnable), JPEG-encoded and sorted by
    label within each split, as the real file is (a cut of its training images by position holds one class)."""
    rng = np.random.default_rng(0)
    n = n_train + n_test
    y = rng.permutation(np.arange(n) % 10)
    yy, xx = np.mgrid[0:32, 0:32]
    imgs = []
    for c in y:
        base = np.stack([np.full((32, 32), 40 + 20 * c), np.sin((xx if c % 2 else yy) * (c + 1) / 5) * 100 + 128,
                         np.full((32, 32), 200 - 15 * c)], -1)
        imgs.append(np.clip(base + rng.normal(0, 12, (32, 32, 3)), 0, 255).astype(np.uint8))
    arrays = {}
    for split, sl in (("train", slice(0, n_train)), ("test", slice(n_train, None))):
        order = np.argsort(y[sl], kind="stable")
        y[sl] = y[sl][order]
        imgs[sl] = [imgs[sl][i] for i in order]
        blobs = []
        for im in imgs[sl]:
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="JPEG", quality=90)
            blobs.append(buf.getvalue())
        arrays[f"{split}_jpeg"] = np.frombuffer(b"".join(blobs), dtype=np.uint8)
        arrays[f"{split}_offsets"] = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
        arrays[f"y_{split}"] = y[sl].astype(np.uint8)
    np.savez(path, **arrays)


def test_cifar10_suite_rows_splits_and_references(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHPLUG_CACHE", str(tmp_path / "cache"))
    src, out = tmp_path / "cifar10_jpeg_q75.npz", tmp_path / "c.json"
    _fake_cifar(src)
    assert cli_main(["bench", "neurohash-cifar10", "--data", str(src), "--max-rows", "200", "--lengths", "8", "16",
                     "--seeds", "2", "--budget", "2", "--backbone-epochs", "2",
                     "--hp", '{"D": 256, "z_prime": 8, "hdc_epochs": 2, "epochs": 2}', "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    rows = {"full", "random", "itq_raw", "lsh_raw", "itq_hv", "pca_hv", "float_raw", "float_hv", "chance"}
    assert set(res["rows"]) == rows
    for row in rows:
        assert set(res["rows"][row]) == {"8", "16"} and len(res["per_seed"][row]["8"]) == 2
    # ten classes, balanced queries: a random ranking scores about 1/10 (exactly, by the tie-aware expectation)
    assert 0.05 < res["rows"]["chance"]["8"] < 0.2
    assert all(v == 0 for d in res["protocol"]["validation_overlap"].values() for v in d.values())
    assert res["tuning"]["tuning"]["settings_per_method"]["NeuroHash"] == 2
    assert res["chosen"] == res["tuning"]["results"][0]["params"]
    bb = res["protocol"]["backbone"]["train_images"]
    counts = np.bincount(np.load(src)["y_train"])
    want = np.round(0.9 * counts).astype(int)  # 90 % of each class (the smoke run's subset keeps them all here)
    assert bb.startswith(f"{want.sum()} CIFAR-10 training images, {want.min()}-{want.max()} per class"), bb
    # the validation split holds every class although the file is sorted by label (one query per class)
    assert res["protocol"]["validation"].startswith("10 queries (1 per class) and 20 database images"), \
        res["protocol"]["validation"]
