"""The NeuroHash benches (hashplug.bench.neurohash) on tiny synthetic digits: the fair protocol's JSON shapes,
its splits, its reference rows, the PNG and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("scipy")

from hashplug.bench import neurohash as nb  # noqa: E402
from hashplug.cli import main as cli_main  # noqa: E402
from hashplug.validation import HashplugError  # noqa: E402

HP = '{"D": 256, "z_prime": 8, "hdc_epochs": 2, "epochs": 2}'


@pytest.fixture(scope="module")
def mixed_mnist(tmp_path_factory):
    """The tiny synthetic digits (conftest's ``tiny_mnist`` recipe) in shuffled order, so every digit range of
    the protocol holds every class (the sorted file puts classes 0-4 and 5-9 in different ranges)."""
    from _data import synthetic_digits

    X, y = synthetic_digits()
    order = np.random.default_rng(1).permutation(len(y))
    X, y = X[order], y[order]
    path = tmp_path_factory.mktemp("mnist") / "mnist.npz"
    np.savez(path, x_train=X[:300], y_train=y[:300], x_test=X[300:], y_test=y[300:])
    return path


ROWS = {"full", "random", *(f"no_{t}" for t in nb.TERMS), "mse_only", "itq_raw", "itq_hv", "lsh_raw", "pca_hv",
        "float_raw", "float_hv", "chance"}


@pytest.fixture(scope="module")
def ablation(mixed_mnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("abl") / "abl.json"
    assert cli_main(["bench", "neurohash-ablation", "--data", str(mixed_mnist), "--max-rows", "120", "--lengths", "8",
                     "16", "--seeds", "2", "--budget", "3", "--hp", HP, "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_ablation_json_has_every_row_per_seed_and_the_mean(ablation):
    res = ablation
    assert set(res["rows"]) == ROWS
    assert res["seeds"] == [0, 1]
    for row in ROWS:
        assert set(res["rows"][row]) == {"8", "16"}
        for b in ("8", "16"):
            vals = res["per_seed"][row][b]
            assert len(vals) == 2 and all(0 <= v <= 1 for v in vals)
            assert res["rows"][row][b] == pytest.approx(np.mean(vals), abs=1e-4)
    # float and chance rows do not depend on the code length
    for row in ("float_raw", "float_hv", "chance"):
        assert res["rows"][row]["8"] == res["rows"][row]["16"]
    assert res["rows"]["chance"]["8"] < res["rows"]["float_hv"]["8"]
    assert res["gain_over_random"]["8"] == pytest.approx(res["rows"]["full"]["8"] - res["rows"]["random"]["8"], abs=1e-4)


def test_ablation_is_tuned_on_validation_scenes_of_digits_nobody_else_saw(ablation):
    res = ablation
    tune = res["tuning"]
    assert tune["protocol"]["split"] == "val"
    assert res["chosen"] == tune["results"][0]["params"]
    assert tune["tuning"]["settings_per_method"]["NeuroHash"] == 3 and tune["tuning"]["grids"]["itq_raw"] == {}
    val, test = tune["protocol"]["digit_ranges"], res["protocol"]["digit_ranges"]
    spans = [val["image_encoder"], val["queries"], val["database"], test["queries"], test["database"]]
    for i, a in enumerate(spans):
        for b in spans[i + 1 :]:
            assert a[1] <= b[0] or b[1] <= a[0], (a, b)
    assert res["protocol"]["image_encoder"]["train_digits"] == val["image_encoder"][1] - val["image_encoder"][0]


def test_the_pca_itq_start_untrained_is_exactly_itq_on_the_hypervectors(mixed_mnist):
    d = nb.build_scene_data(str(mixed_mnist), n_db=120, n_q=40, seed=0, cnn_train=250, verbose=False)
    hp = {**nb.DEFAULT_HP, **json.loads(HP)}
    hashed = nb._Hashed(nb._stage1(d, hp, 0, False), d)
    D, _ = hashed.distances(16, {"init": "pca_itq", "train_hyperplanes": False})
    refs = {row: D2 for row, L, D2 in nb.reference_distances(
        nb._raw_features(d["q"]), nb._raw_features(d["db"]), hashed.Hq, hashed.Hdb, [16], 0,
        hv_center=hashed.enc.H_mean_) if L in (16, None)}
    np.testing.assert_array_equal(D, refs["itq_hv"])
    hashed.check_codes()
    # a tuning setting trains the hyperplanes from that start (stage 1 left them untrained)
    P0 = hashed.enc.P_.copy()
    hashed.distances(16, nb._stage2_params({"init": "pca_itq", "lr": 0.01}))
    assert hashed.enc.train_hyperplanes is True and len(hashed.enc.history_["hyperplanes"]) == 2
    assert not np.allclose(hashed.enc.P_, P0)


def test_spatial_cli_json_shape_and_png(mixed_mnist, tmp_path):
    out, png = tmp_path / "sp.json", tmp_path / "grid.png"
    assert cli_main(["bench", "neurohash-spatial", "--data", str(mixed_mnist), "--max-rows", "120", "--lengths", "8",
                     "--seeds", "2", "--budget", "2", "--hp", HP, "--out", str(out), "--png", str(png)]) == 0
    res = json.loads(out.read_text())
    assert set(res["rows"]) == {"r=0.1", "r=0.2", "r=0.3", "r=0.4"}
    ws = ("10", "1", "0.1")
    hv = {f"{r} w={w}" for r in ("NeuroHash", "itq_hv", "pca_hv", "float_hv") for w in ws}
    rows = hv | {"itq_raw", "lsh_raw", "float_raw", "float_global"}
    assert set(res["rows"]["r=0.1"]) == rows | {"chance"}
    assert set(res["map_at_k"]) == rows | {"chance"}
    assert all(0 <= v <= 1 for rr in res["rows"].values() for row in rr.values() for v in row.values())
    # a position-blind baseline ranks the same with and without the focus
    cond = res["conditional"]["rows"]
    assert cond["eta=1"]["itq_raw"] == cond["eta=10"]["itq_raw"]
    assert set(cond["eta=10"]) == rows
    # the hypervector references rank the focused queries' own hypervectors: at w = 0.1 the focus moves them
    assert any(cond["eta=1"][f"float_hv w={w}"] != cond["eta=10"][f"float_hv w={w}"] for w in ws)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_tuned_setting_refuses_a_file_that_is_not_a_validation_result(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"suite": "neurohash-ablation"}))
    with pytest.raises(HashplugError, match="not a neurohash-tune result"):
        nb.tuned_setting(str(bad), lambda: {})
    with pytest.raises(HashplugError, match="validation split"):
        nb.tuned_setting({"suite": "neurohash-tune", "chosen": {}, "protocol": {"split": "test"}}, lambda: {})


def test_digit_ranges_refuse_overlap():
    with pytest.raises(HashplugError, match="overlap or are empty"):
        nb._digit_ranges("val", 300, 300, 300)
    r = nb._digit_ranges("val", 60_000, 10_000, 50_000)
    assert r == {"queries": (50_000, 55_000), "database": (55_000, 60_000), "image_encoder": (0, 50_000)}


def test_merge_of_one_seed_runs_equals_the_two_seed_run(ablation, tmp_path):
    def one(i):
        doc = json.loads(json.dumps(ablation))
        doc["seeds"] = [ablation["seeds"][i]]
        doc["per_seed"] = {r: {b: [v[i]] for b, v in cols.items()} for r, cols in ablation["per_seed"].items()}
        doc["protocol"] = {**doc["protocol"], "per_seed": [ablation["protocol"]["per_seed"][i]]}
        return doc

    paths = []
    for i in (1, 0):  # out of order on purpose
        p = tmp_path / f"s{i}.json"
        p.write_text(json.dumps(one(i)))
        paths.append(str(p))
    out = tmp_path / "m.json"
    assert cli_main(["bench", "neurohash-ablation", "--merge", *paths, "--out", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert merged["seeds"] == [0, 1]
    assert merged["rows"] == ablation["rows"] and merged["per_seed"] == ablation["per_seed"]
    assert merged["std"] == ablation["std"] and merged["full_minus_best_reference"] == ablation["full_minus_best_reference"]
    with pytest.raises(HashplugError, match="share seeds"):
        nb.merge_runs([one(0), one(0)])
    other = one(1)
    other["chosen"] = {"lr": 123}
    with pytest.raises(HashplugError, match="differ in 'chosen'"):
        nb.merge_runs([one(0), other])
