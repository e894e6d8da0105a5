"""The BioConvHash table bench (hashplug.bench.bioconvhash_tables): JSON shape, ablation, shadows, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hashplug.bench import bioconvhash_tables as bc
from hashplug.cli import main as cli_main

pytest.importorskip("torch")

SMALL_HP = {"n_filters": 12, "kernel_sizes": [3, 4], "kci": 3, "pool_size": 7, "filter_epochs": 1,
            "n_patches": 3000, "epochs": 3, "init": "data", "lr": 0.05, "device": "cpu"}


def test_shadow_is_a_ramp_across_the_width():
    X = np.ones((2, 3, 5), np.float32)
    S = bc.shadow(X, strength=0.75)
    np.testing.assert_allclose(S[0, 0], [1.0, 0.8125, 0.625, 0.4375, 0.25])
    np.testing.assert_array_equal(S[:, 0], S[:, 2])  # the same ramp on every row
    assert bc.shadow(np.ones((1, 3, 4, 4)), 0.5).shape == (1, 3, 4, 4)


def test_paper_kci_table_is_table_4():
    assert bc.PAPER_KCI["mnist"]["10"]["16"] == 80.34 and bc.PAPER_KCI["cifar10"]["1"]["2"] == 26.94
    assert set(bc.PAPER_KCI["mnist"]) == {str(v) for v in bc.KCI_ABLATION}


def test_cli_bench_json_shape_ablation_shadows_and_png(tiny_mnist, tmp_path, capsys):
    out, png = tmp_path / "conv.json", tmp_path / "filters.png"
    rc = cli_main([
        "bench", "bioconvhash-mnist", "--data", str(tiny_mnist), "--limit", "400", "--seeds", "1", "--k", "2", "4",
        "--kci", "1", "12", "--shadows", "--filters-png", str(png), "--onnx-check", "50",
        "--hp", json.dumps(SMALL_HP), "--out", str(out),
    ])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Table 4 k_CI ablation" in printed and "Shadows" in printed
    res = json.loads(out.read_text())
    for key in ("table", "metric", "rows", "paper", "seeds", "hyperparameters", "train_seconds", "std", "per_seed",
                "m", "codes_sha256", "convergence", "seconds_per_epoch", "filter_stage", "checks"):
        assert key in res, key
    assert res["metric"] == "mAP@All" and res["seeds"] == [0]
    assert set(res["rows"]["BioConvHash"]) == {"2", "4"}
    assert res["paper"]["BioConvHash"]["16"] == 80.34
    assert res["hyperparameters"]["BioConvHash"]["n_filters"] == 12
    assert set(res["kci_ablation"]["rows"]) == {"1", "12"} and res["kci_ablation"]["ks"] == [2, 4]
    assert res["kci_ablation"]["paper"]["1"]["2"] == 56.16
    assert {"BioHash k=4 clean", "BioHash k=4 shadowed", "BioConvHash k=4 shadowed",
            "BioConvHash without patch normalisation k=4 shadowed"} <= set(res["shadows"]["rows"])
    onnx = res["checks"]["onnx"]
    assert onnx["n_images"] == 50 and onnx["identical_rows"] == 50
    assert set(onnx["onnx_ms_per_image"]) == {"1", "1024"}
    assert min(res["checks"]["encode_vs_features"]["4"]) >= 0.99
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    for v in res["rows"]["BioConvHash"].values():
        assert 0 < v <= 100


def test_per_k_forward_settings_get_their_own_features(tiny_mnist, tmp_path):
    """A preset may pool differently per hash length: one filter stage, one feature pass per setting."""
    hp = {**SMALL_HP, "by_k": {"2": {"pool_size": 14}}}
    res = bc.run_conv_table("mnist", tiny_mnist, ks=[2, 4], seeds=1, hp=hp, limit=400, onnx_check=20,
                            verbose=False, out=tmp_path / "r.json")
    # 26 x 26 and 25 x 25 maps: pool 14 -> 2 x 2 windows, pool 7 -> 4 x 4, for 12 filters in 2 banks
    assert res["n_features_pooled"]["BioConvHash"] == {"2": 2 * 12 * 4, "4": 2 * 12 * 16}
    assert res["hyperparameters"]["by_k"]["2"]["pool_size"] == 14
    assert res["checks"]["onnx"]["identical_rows"] == 20
