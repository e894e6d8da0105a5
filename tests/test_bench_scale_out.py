"""``hashplug bench scale-out`` (hashplug/bench/scale_out.py): a smoke run of the suite on tiny settings (on the
session's local Ray cluster, conftest's ``ray_cluster``, which the suite uses as it finds it; 300 rows per
path), its flags, and the small BioConvHash of smoke runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("ray.data")
pytest.importorskip("lance_ray")
pytest.importorskip("onnx")

from hashplug.cli import main  # noqa: E402


def test_scale_out_smoke_run_writes_one_row_per_encoder_and_path(ray_cluster, tiny_mnist, tmp_path, capsys,
                                                                 monkeypatch):
    import ray.data

    real_schema = ray.data.Dataset.schema

    def schema(self, fetch_if_missing=True):  # the generated dataset is never run just to learn its columns
        known = real_schema(self, fetch_if_missing=False)
        assert known is not None or not fetch_if_missing, "write_table ran the dataset to learn its schema"
        return known

    monkeypatch.setattr(ray.data.Dataset, "schema", schema)
    out = tmp_path / "scale_out.json"
    assert main(["bench", "scale-out", "--data", str(tiny_mnist), "--encoders", "lsh", "--max-rows", "300",
                 "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    rows = res["rows"]
    assert [(r["encoder"], r["workers"]) for r in rows] == [("LSH-64", 1), ("LSH-64", 1), ("LSH-64", 2)]
    assert [r["path"].split(" ")[0] for r in rows] == ["hashplug.ingest", "Ray", "Ray"]
    for r in rows:
        assert r["rows"] == 300 and r["checks"] == {"rows": 300, "ids_once": True, "codes_equal_onnx": True}
        assert r["rows_per_s"] > 0 and r["rows_per_s_per_worker"] == pytest.approx(r["rows_per_s"] / r["workers"], abs=0.08)  # both rounded to 0.1
    assert rows[0]["ratio_to_ingest"] == 1.0 and rows[0]["commits"] == 1 and rows[1]["commits"] == 1
    assert res["settings"]["smoke"] is True and res["versions"]["ray"].startswith("2.")
    printed = capsys.readouterr().out
    assert "rows/s/worker" in printed and "FAILED" not in printed


def test_scale_out_has_its_own_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "scale-out", "--help"])
    assert exc.value.code == 0
    page = capsys.readouterr().out
    for flag in ("--data", "--encoders", "--rows", "--conv-rows", "--max-rows", "--chunk-size", "--out"):
        assert flag in page, flag
    with pytest.raises(SystemExit):
        main(["bench", "scale-out", "--sizes", "5"])  # search's flag
    assert "unrecognized arguments: --sizes" in capsys.readouterr().err


def test_the_smoke_bioconvhash_exports_and_encodes_as_fitted(tiny_mnist, tmp_path):
    from hashplug.bench.common import load_mnist_float
    from hashplug.bench.scale_out import _fit_model
    from hashplug.runtime import OnnxEncoder

    X, _, _ = load_mnist_float(tiny_mnist)
    path, enc = _fit_model("bioconvhash", X, 200, 0, True, tmp_path)
    np.testing.assert_array_equal(OnnxEncoder(path).encode(X[:20]), enc.encode(X[:20].reshape(-1, 28, 28)))
