"""The NeuroHash benches (hashplug.bench.neurohash) on tiny synthetic digits: JSON shapes, PNG, the CLI."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("scipy")

from hashplug.bench import neurohash as nb  # noqa: E402
from hashplug.cli import main as cli_main  # noqa: E402

HP = '{"D": 256, "z_prime": 8, "hdc_epochs": 2, "epochs": 2}'


def test_ablation_cli_json_shape(tiny_mnist, tmp_path, capsys):
    out = tmp_path / "abl.json"
    assert cli_main(["bench", "neurohash-ablation", "--data", str(tiny_mnist), "--max-rows", "120", "--lengths", "8", "16",
                     "--hp", HP, "--out", str(out)]) == 0
    assert "Table II" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert set(res["rows"]) == {"full", "random", *(f"no_{t}" for t in nb.TERMS)}
    assert all(set(row) == {"8", "16"} and all(0 <= v <= 1 for v in row.values()) for row in res["rows"].values())
    assert set(res["baselines"]) >= {"LSH (features)", "ITQ (features)"}
    assert res["gain_over_random"]["8"] == pytest.approx(res["rows"]["full"]["8"] - res["rows"]["random"]["8"], abs=1e-4)
    assert res["hyperparameters"]["D"] == 256 and res["protocol"]["image_encoder"]["train_digits"] == 300


def test_spatial_cli_json_shape_and_png(tiny_mnist, tmp_path):
    out, png = tmp_path / "sp.json", tmp_path / "grid.png"
    assert cli_main(["bench", "neurohash-spatial", "--data", str(tiny_mnist), "--max-rows", "120", "--lengths", "8",
                     "--hp", HP, "--out", str(out), "--png", str(png)]) == 0
    res = json.loads(out.read_text())
    assert set(res["rows"]) == {"w=10", "w=1", "w=0.1"}
    assert set(res["rows"]["w=1"]) == {"r=0.1", "r=0.2", "r=0.3", "r=0.4"}
    # relevance only grows with r, and at K = all the ranking is the same: mAP@K_r rows are in [0, 1]
    assert all(0 <= v <= 1 for rr in res["rows"].values() for row in rr.values() for v in row.values())
    assert set(res["conditional"]["rows"]["w=1"]["8"]) == {"eta=1", "eta=10"}
    assert png.read_bytes()[:4] == b"\x89PNG"
