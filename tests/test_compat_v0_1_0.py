"""Files written by hashplug 0.1.0 (models, ONNX files, LanceDB tables) still load and give the same codes.

The fixture (tests/fixtures/v0_1_0) was written by 0.1.0 with its model paths under
/tmp/hashplug-fixture-v0_1_0 (LanceDB stores the function's model path absolute), so the test puts a copy
there before opening the tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hashplug

FIXTURE = Path(__file__).parent / "fixtures" / "v0_1_0"
WRITTEN_AT = Path("/tmp/hashplug-fixture-v0_1_0")


@pytest.fixture
def fx(v0_1_0_at_written_path):
    """The fixture at the path its tables name (conftest's copy, under a file lock)."""
    assert v0_1_0_at_written_path == WRITTEN_AT
    return WRITTEN_AT


def test_saved_models_load_and_encode_identically(fx):
    X = np.load(fx / "X.npy")
    bh = hashplug.load_encoder(fx / "biohash_k4.npz")
    np.testing.assert_array_equal(bh.encode(X), np.load(fx / "codes_biohash_k4_packed.npy"))
    np.testing.assert_array_equal(bh.encode(X, format="indices"), np.load(fx / "codes_biohash_k4_indices.npy"))
    itq = hashplug.load_encoder(fx / "itq_k16.npz")
    np.testing.assert_array_equal(itq.encode(X), np.load(fx / "codes_itq_k16_packed.npy"))


def test_onnx_files_load_and_encode_identically(fx):
    X = np.load(fx / "X.npy")
    bh = hashplug.OnnxEncoder(fx / "biohash_k4.onnx")
    np.testing.assert_array_equal(bh.encode(X, format="packed"), np.load(fx / "codes_biohash_k4_packed.npy"))
    np.testing.assert_array_equal(bh.encode(X, format="indices"), np.load(fx / "codes_biohash_k4_indices.npy"))
    itq = hashplug.OnnxEncoder(fx / "itq_k16.onnx")
    np.testing.assert_array_equal(itq.encode(X, format="packed"), np.load(fx / "codes_itq_k16_packed.npy"))


@pytest.mark.parametrize("name", ["dense", "sparse"])
def test_tables_reopen_search_and_take_new_rows(fx, name):
    import lancedb

    X = np.load(fx / "X.npy")
    tbl = lancedb.connect(fx / "db").open_table(name)
    assert tbl.count_rows() == 60
    hit = hashplug.search(tbl, X[7], limit=1, columns=["id"])
    assert hit["_distance"][0].as_py() == 0
    hashplug.add(tbl, X[:5], columns={"id": np.arange(100, 105), "label": np.zeros(5, dtype=np.int64)})
    tbl.add([{"id": 200, "label": 0, "vector": X[9].tolist()}])
    assert tbl.count_rows() == 66
    new = tbl.search().where("id IN (100, 200)").to_arrow().sort_by("id")
    old = tbl.search().where("id IN (0, 9)").to_arrow().sort_by("id")
    assert new["code"].to_pylist() == old["code"].to_pylist()  # same codes as 0.1.0 wrote for the same rows
