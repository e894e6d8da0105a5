"""Smoke tests of the serving benchmarks (``hashplug bench encode | ingest | ag-news``).

Tiny synthetic data and settings: they check that each suite runs end to end and writes JSON of the
documented shape with finite numbers. They assert nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from hashplug.bench import ag_news, encode, ingest  # noqa: E402


def _args(**kw):
    base = dict(
        data=None,
        lengths=None,
        seeds=1,
        methods=None,
        epochs=None,
        max_rows=None,
        rows=None,
        out=None,
        hp=None,
        grid=None,
    )
    base.update(kw)
    return argparse.Namespace(**base)


def _finite(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@pytest.fixture(scope="module")
def fake_mnist(tmp_path_factory):
    rng = np.random.default_rng(0)
    p = tmp_path_factory.mktemp("data") / "mnist.npz"
    np.savez(
        p,
        x_train=rng.integers(0, 256, (300, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, 300),
        x_test=rng.integers(0, 256, (100, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, 100),
    )
    return p


def test_encode_smoke(fake_mnist, tmp_path, capsys):
    out = tmp_path / "encode.json"
    args = _args(data=str(fake_mnist), lengths=[8], methods=["lsh", "biohash"], epochs=1, max_rows=200, out=str(out))
    assert encode.bench_encode(args) == 0
    assert "ort/torch" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["suite"] == "encode"
    rows = res["rows"]
    assert {(r["method"], r["batch"]) for r in rows} == {
        (m, b) for m in ("lsh", "biohash") for b in encode.ENCODE_BATCHES
    }
    for r in rows:
        for key in (
            "ort_rows_per_s",
            "torch_rows_per_s",
            "numpy_rows_per_s",
            "ort_over_torch",
            "ort_over_numpy",
        ):
            assert _finite(r[key]) and r[key] > 0, (key, r)
        assert r["k"] == 8
        # all three backends produce the same packed codes
        assert r["codes_agree_with_numpy"] == {"ort": 1.0, "torch": 1.0, "numpy": 1.0}
        for key in ("ort_ms_per_image", "ort_cpu_ms_per_image", "flop_bound_ms", "flop_bound_ratio"):
            assert _finite(r[key]) and r[key] > 0, (key, r)
        assert r["ort_ms_per_image"] == pytest.approx(1e3 / r["ort_rows_per_s"], rel=1e-3)
    assert res["settings"]["peak_gflops_one_core"] > 0
    # LSH-8 is one 784 x 8 product: 2 x 6,272 FLOPs per image; BioHash one 784 x m product
    lsh = next(r for r in rows if r["method"] == "lsh")
    assert lsh["flops_per_image"] == 2 * 784 * 8
    assert lsh["flop_bound_ms"] == pytest.approx(
        lsh["flops_per_image"] / (res["settings"]["peak_gflops_one_core"] * 1e9) * 1e3, rel=0.01, abs=1e-4)


def test_graph_macs_sums_the_ops():
    from hashplug.graph import Conv2d, Flatten, Graph, MatMul, Node, Relu

    g = Graph({"x": (1, 5, 5)}, [Node(Conv2d(np.ones((2, 1, 3, 3), np.float32)), ("x",), "c"),
                                 Node(Relu(), ("c",), "r"), Node(Flatten(), ("r",), "f"),
                                 Node(MatMul(np.ones((18, 4), np.float32)), ("f",), "y")], None, "y")
    assert encode.graph_macs(g) == 2 * 3 * 3 * 9 + 18 * 4


def test_encode_saved_models(fake_mnist, tmp_path, capsys):
    """--models DATASET=PATH: a saved BioConvHash timed under onnxruntime on that dataset's images."""
    from hashplug.encoders import get_encoder
    from hashplug.encoders.persistence import save_encoder

    X = np.load(fake_mnist)["x_train"][:200].astype(np.float32) / 255
    enc = get_encoder("bioconvhash", k=4, m=40, n_filters=8, kernel_sizes=(3,), kci=2, pool_size=10, pool_stride=5,
                      filter_epochs=1, n_patches=500, epochs=1, device="cpu", random_state=0).fit(X)
    model = save_encoder(enc, tmp_path / "bch.npz")
    out = tmp_path / "encode_models.json"
    args = _args(data=str(fake_mnist), max_rows=64, out=str(out))
    args.models = [f"mnist={model}"]
    assert encode.bench_encode(args) == 0
    assert "ms/bound" in capsys.readouterr().out
    res = json.loads(out.read_text())
    (row,) = res["rows"]  # --models alone: no registered encoder is fitted
    assert (row["method"], row["dataset"], row["batch"], row["model"]) == ("bioconvhash", "mnist", 64, str(model))
    assert row["codes_agree_with_numpy"] == {"ort": 1.0}
    assert row["flops_per_image"] == 2 * encode.graph_macs(enc.graph)
    for key in ("ort_ms_per_image", "ort_cpu_ms_per_image", "flop_bound_ms", "flop_bound_ratio", "ort_rows_per_s"):
        assert _finite(row[key]) and row[key] > 0, (key, row)
    args.models = ["mnist"]
    with pytest.raises(SystemExit, match="DATASET=PATH"):
        encode.bench_encode(args)


@pytest.mark.parametrize("seconds_per_call, trials, calls_per_trial", [(0.01, 7, 30), (0.5, 7, 1), (2.5, 3, 1)])
def test_median_rate_sizes_its_trials_and_times_a_long_call_fewer_times(monkeypatch, seconds_per_call, trials,
                                                                       calls_per_trial):
    """A trial lasts about target_seconds; a call longer than the whole budget (7 x 0.3 s) gets 3 trials."""
    from hashplug.bench import common

    clock = [0.0]
    calls = []

    def call(i):
        calls.append(i)
        clock[0] += seconds_per_call

    monkeypatch.setattr(common.time, "perf_counter", lambda: clock[0])
    res = common.median_rate(call, 10, repeats=7, target_seconds=0.3, max_calls=100)
    assert (res["repeats"], res["calls_per_trial"]) == (trials, calls_per_trial)
    assert len(calls) == 2 + trials * calls_per_trial  # warm-up, sizing, trials
    assert res["median"] == pytest.approx(10 / seconds_per_call)


def test_ingest_smoke(fake_mnist, tmp_path):
    out = tmp_path / "ingest.json"
    args = _args(data=str(fake_mnist), rows=1500, max_rows=200, lengths=[16], out=str(out))
    args.chunk_size = 400  # several commits
    assert ingest.bench_ingest(args) == 0
    res = json.loads(out.read_text())
    assert res["suite"] == "ingest"
    assert res["settings"]["chunks"] == 4
    assert res["checks"] == {"plain_rows": 1500, "ingest_rows": 1500, "codes_equal_first_1000_ids": True}
    assert len(res["rows"]) == 5
    for r in res["rows"]:
        assert r["rows"] == 1500
        assert all(_finite(r[k]) and r[k] > 0 for k in ("seconds", "rows_per_s", "ratio_to_ingest"))
    assert res["rows"][-1]["path"].startswith("hashplug.ingest") and res["rows"][-1]["ratio_to_ingest"] == 1.0
    assert all(_finite(v) for v in res["ratios"].values())


def test_ag_news_smoke(fake_ag_news, tmp_path):
    out = tmp_path / "ag_news.json"
    hp = {"sizes": [[64, 4]], "centers": [False]}
    args = _args(
        data=str(fake_ag_news),
        lengths=[16],
        epochs=1,
        out=str(out),
        hp=json.dumps(hp),
        grid=json.dumps({"init_scale": [0.1, 0.3]}),
    )
    assert ag_news.bench_ag_news(args) == 0
    res = json.loads(out.read_text())
    assert res["suite"] == "ag-news"
    assert res["protocol"]["n_queries"] == 400 and res["protocol"]["n_db"] == 400
    methods = [r["method"] for r in res["rows"]]
    assert methods == ["float32", "sign", "ITQ", "LSH", "BioHash"]
    by = {r["method"]: r for r in res["rows"]}
    assert by["float32"]["recall10"] == 1.0 and by["float32"]["storage_bits"] == 32 * 32
    assert by["sign"]["storage_bits"] == 32
    assert by["BioHash"]["storage_bits"] == 4 * 6  # k * ceil(log2 m)
    for r in res["rows"][1:]:
        for key in ("p10", "p10_tie_aware", "recall10", "p10_rescored", "recall10_rescored"):
            assert _finite(r[key]) and 0.0 <= r[key] <= 1.0, (key, r)
        # rescoring the 100 Hamming candidates (here: a quarter of the database) can only help recall
        assert r["recall10_rescored"] >= r["recall10"] - 1e-9
    (tuned,) = res["tuning"]
    assert len(tuned["trials"]) == 2 and tuned["chosen"]["init_scale"] in (0.1, 0.3)
    assert by["BioHash"]["hp"]["init_scale"] == tuned["chosen"]["init_scale"]
    assert _finite(by["BioHash"]["row_norms"]["median"])
