"""The BioConvHash table bench (hashplug.bench.bioconvhash_tables): JSON shape, ablation, shadows, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hashplug.bench import bioconvhash_tables as bc
from hashplug.cli import main as cli_main

pytest.importorskip("torch")

SMALL_HP = {"n_filters": 12, "kernel_sizes": [3, 4], "kci": 3, "pool_size": 7, "pool_stride": None, "filter_epochs": 1,
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
        "bench", "bioconvhash-mnist", "--data", str(tiny_mnist), "--max-rows", "400", "--seeds", "1", "--lengths", "2", "4",
        "--kci", "1", "12", "--shadows", "--shadow-strengths", "0.75", "0.95", "--filters-png", str(png), "--onnx-check", "50",
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
    won = res["kci_ablation"]["units_ever_won"]
    assert set(won) == {"1", "12"} and all(0 < v <= 1 for r in won.values() for v in r.values())
    assert {"BioHash k=4 clean", "BioHash k=4 shadowed", "BioConvHash k=4 shadowed",
            "BioConvHash without patch normalisation k=4 shadowed"} <= set(res["shadows"]["rows"])
    assert res["shadows"]["strengths"] == [0.75, 0.95]
    assert {"BioHash k=4 shadowed 0.95", "BioConvHash k=4 shadowed 0.95",
            "BioConvHash without patch normalisation k=4 shadowed 0.95"} <= set(res["shadows"]["rows"])
    onnx = res["checks"]["onnx"]
    assert onnx["n_images"] == 50 and onnx["identical_rows"] == 50
    assert onnx["rows_differing"] == 0 and onnx["weights_sha256_match"] is True
    assert set(onnx["onnx_ms_per_image"]) == {"1", "1024"}
    assert min(res["checks"]["encode_vs_features"]["4"]) >= 0.99
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    for v in res["rows"]["BioConvHash"].values():
        assert 0 < v <= 100
    # the fair protocol: chance and float rows at every column, the seed's validation split checked against the
    # test queries of every seed of the 1-seed table, its own training side allowed and measured
    assert set(res["rows"]) == {"BioConvHash", "chance", "float"}
    assert res["rows"]["chance"]["2"] == res["rows"]["chance"]["4"] < res["rows"]["BioConvHash"]["4"]
    assert res["rows"]["float"]["2"] == res["references_per_seed"]["float"][0] > res["rows"]["chance"]["2"]
    rec = res["validation"]["per_seed"]["0"]
    assert rec["overlap"]["seed 0 queries"] == {"validation queries": 0, "validation database": 0}
    assert rec["allowed"] == ["seed 0 database"] and len(rec["rows_sha256"]) == 64
    assert "\nchance " in printed and "\nfloat " in printed


def test_per_k_forward_settings_get_their_own_features(tiny_mnist, tmp_path):
    """A preset may pool differently per hash length: one filter stage, one feature pass per setting."""
    hp = {**SMALL_HP, "by_k": {"2": {"pool_size": 14}}}
    res = bc.run_conv_table("mnist", tiny_mnist, ks=[2, 4], seeds=1, hp=hp, limit=400, onnx_check=20,
                            verbose=False, out=tmp_path / "r.json")
    # 26 x 26 and 25 x 25 maps: pool 14 -> 2 x 2 windows, pool 7 -> 4 x 4, for 12 filters in 2 banks
    assert res["n_features_pooled"]["BioConvHash"] == {"2": 2 * 12 * 4, "4": 2 * 12 * 16}
    assert res["hyperparameters"]["by_k"]["2"]["pool_size"] == 14
    assert res["checks"]["onnx"]["identical_rows"] == 20


def test_runs_on_other_seeds_merge_into_one_table(tiny_mnist, tmp_path, capsys):
    hp = {**SMALL_HP, "n_filters": 6, "kernel_sizes": [3]}
    outs = []
    for s in (0, 1):
        out = tmp_path / f"s{s}.json"
        assert cli_main(["bench", "bioconvhash-mnist", "--data", str(tiny_mnist), "--max-rows", "300", "--seed-list",
                         str(s), "--lengths", "2", "--kci", "1", "3", "--onnx-check", "0", "--hp", json.dumps(hp),
                         "--out", str(out)]) == 0
        outs.append(out)
    one = [json.loads(p.read_text()) for p in outs]
    assert [r["seeds"] for r in one] == [[0], [1]]
    merged_path = tmp_path / "merged.json"
    assert cli_main(["bench", "bioconvhash-mnist", "--merge", *map(str, outs), "--out", str(merged_path)]) == 0
    m = json.loads(merged_path.read_text())
    assert m["seeds"] == [0, 1]
    vals = [one[0]["per_seed"]["BioConvHash"]["2"][0], one[1]["per_seed"]["BioConvHash"]["2"][0]]
    assert m["per_seed"]["BioConvHash"]["2"] == vals
    assert m["rows"]["BioConvHash"]["2"] == pytest.approx(np.mean(vals), abs=0.006)
    assert m["std"]["BioConvHash"]["2"] == pytest.approx(np.std(vals), abs=0.006)
    assert m["kci_ablation"]["per_seed"]["1"]["2"] == [r["kci_ablation"]["per_seed"]["1"]["2"][0] for r in one]
    assert len(m["filter_stage"]) == 2 and len(m["codes_sha256"]["BioConvHash"]["2"]) == 2
    # a run of another setting, or the same seed twice, is refused
    with pytest.raises(Exception, match="share seeds"):
        bc.merge_conv_tables([outs[0], outs[0]])
    other = json.loads(outs[1].read_text())
    other["hyperparameters"]["BioConvHash"]["n_filters"] = 99
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps(other))
    with pytest.raises(Exception, match="differs from"):
        bc.merge_conv_tables([outs[0], bad])


def test_tune_script_scores_layer_grid_and_biohash_reference(tiny_mnist, tmp_path, monkeypatch):
    """benchmarks/tune_bioconvhash.py: one row per (filter, layer) setting, the BioHash reference row, resumable."""
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "tune_bioconvhash.py"
    out = tmp_path / "tune.json"
    base = {kk: v for kk, v in SMALL_HP.items() if kk != "device"}
    argv = [str(script), "--dataset", "mnist", "--data", str(tiny_mnist), "--k", "2", "4", "--per-class", "5",
            "--limit", "500",
            "--base", json.dumps(base), "--layer-grid", '[{}, {"layer_center": true}]', "--biohash-reference",
            "--out", str(out)]
    monkeypatch.setattr("sys.argv", argv)
    runpy.run_path(str(script), run_name="__main__")
    doc = json.loads(out.read_text())
    ref = [r for r in doc["rows"] if "biohash_reference" in r]
    grid = [r for r in doc["rows"] if "layer" in r]
    assert len(ref) == 1 and set(ref[0]["val_map"]) == {"2", "4"}
    assert [r["layer"] for r in grid] == [{}, {"layer_center": True}]
    # the split: seed 0's training side minus seeds 0-2's test queries (--report-seeds default), all of the rest
    from hashplug.bench.tables import load_data, test_queries

    _, y, name = load_data("mnist", tiny_mnist, 500, flat=False)
    q = test_queries("mnist", y, [0, 1, 2], name)
    pool = np.setdiff1d(np.setdiff1d(np.arange(500), q[0]), np.concatenate([q[1], q[2]]))
    assert doc["n_val_queries"] == 50 and doc["n_db"] == pool.size - 50
    val = doc["validation"]
    assert val["report_seeds"] == [0, 1, 2] and val["sizes"] == {"queries": 50, "database": doc["n_db"]}
    for s in (0, 1, 2):
        assert val["overlap"][f"seed {s} queries"] == {"validation queries": 0, "validation database": 0}
    for r in doc["rows"]:
        assert all(0 < v <= 100 for v in r["val_map"].values())
    assert all(r["convergence_last_k"]["units_ever_won"] > 0 for r in grid)
    # a second run appends to the same file and does not score the reference again
    runpy.run_path(str(script), run_name="__main__")
    doc2 = json.loads(out.read_text())
    assert sum("biohash_reference" in r for r in doc2["rows"]) == 1 and len(doc2["rows"]) == 1 + 2 * len(grid)


def test_a_run_stopped_in_the_ablation_keeps_its_cells_and_timings(tiny_mnist, tmp_path, monkeypatch):
    """The JSON is written after every (k_CI, k) cell and holds the seed's filter-stage timings so far."""
    out = tmp_path / "conv.json"
    score, calls = bc._score, []

    def stop_at_the_fourth_score(*a, **kw):
        calls.append(1)
        if len(calls) == 4:  # main k = 2, 4; then k_CI = 1 at k = 2; stop at k_CI = 1, k = 4
            raise KeyboardInterrupt
        return score(*a, **kw)

    monkeypatch.setattr(bc, "_score", stop_at_the_fourth_score)
    with pytest.raises(KeyboardInterrupt):
        bc.run_conv_table("mnist", tiny_mnist, ks=[2, 4], seeds=[0], hp=SMALL_HP, kcis=[1], limit=400,
                          onnx_check=0, out=out, verbose=False)
    res = json.loads(out.read_text())
    assert res["partial"].startswith("written during seed 0")
    assert set(res["rows"]["BioConvHash"]) == {"2", "4"}
    assert res["kci_ablation"]["rows"] == {"1": {"2": res["kci_ablation"]["per_seed"]["1"]["2"][0]}}
    (stage,) = res["filter_stage"]
    assert stage["seed"] == 0 and set(stage["layer_seconds"]) == {"2", "4"}
    assert stage["kci_features_seconds"]["1"] > 0
