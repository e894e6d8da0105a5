"""The paper-table benchmark (hashplug.bench.biohash_tables): exact codes, JSON shape, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hashplug
from hashplug.bench import biohash_tables as bt
from hashplug.bench.protocol import flat_setting
from hashplug.data import per_class_split
from hashplug.data.protocols import Split


@pytest.fixture(scope="module")
def digits_split():
    """Digits as integer pixels 0..16 (many exactly tied FlyHash scores), 10 queries per class."""
    from sklearn.datasets import load_digits

    d = load_digits()
    X, y = d.data.astype(np.uint8), np.asarray(d.target)
    q, db = per_class_split(y, 10, seed=0)
    return Split(X[q], y[q], X[db], y[db], q, db, 0, "digits")


def test_ranked_units_give_exactly_the_encoders_codes(digits_split):
    """One ranking at kmax serves every k: codes equal ``encode`` bit for bit, ties included."""
    enc = hashplug.get_encoder("flyhash", k=4, random_state=0).fit(digits_split.Xdb)
    ranked = bt._ranked_units(enc, digits_split.Xdb, kmax=32, chunk=100)
    assert ranked.shape == (len(digits_split.Xdb), 32)
    scores = enc.scores(digits_split.Xdb)
    srt = -np.sort(-scores, axis=1)
    assert (srt[:, 7] == srt[:, 8]).mean() > 0.2  # the check really exercises tied scores
    for k in (1, 2, 8, 16, 32):
        want = hashplug.get_encoder("flyhash", k=k, random_state=0).fit(digits_split.Xdb).encode(digits_split.Xdb)
        np.testing.assert_array_equal(bt._codes_from_ranked(ranked, k, enc.m_), want)


def test_evaluate_cache_matches_uncached(digits_split):
    cache = {"kmax": 16}
    for k in (16, 4, 2):  # any order, one fit
        cached = bt.evaluate("FlyHash", k, digits_split, "mnist", 0, {}, cache=cache)
        plain = bt.evaluate("FlyHash", k, digits_split, "mnist", 0, {})
        assert cached["map"] == pytest.approx(plain["map"], abs=1e-9)
        assert cached["m"] == plain["m"] == 640


def test_run_table_json_shape(tiny_mnist, tmp_path):
    out = tmp_path / "t.json"
    res = bt.run_table("mnist", tiny_mnist, ks=[2, 4], seeds=2, methods=["LSH", "FlyHash", "BioHash"],
                       out=out, epochs=2, limit=500, verbose=False)
    on_disk = json.loads(out.read_text())
    assert on_disk == json.loads(json.dumps(res))
    for key in ("table", "metric", "rows", "paper", "seeds", "hyperparameters", "train_seconds"):
        assert key in on_disk, key
    assert on_disk["metric"] == "mAP@All" and on_disk["seeds"] == [0, 1]
    assert set(on_disk["rows"]) == {"LSH", "FlyHash", "BioHash", "chance", "float"}
    for method, row in on_disk["rows"].items():
        assert set(row) == {"2", "4"}
        assert all(0.0 <= v <= 100.0 for v in row.values()), (method, row)
    assert on_disk["paper"]["BioHash"]["2"] == 44.38
    # The headline rows are the order-independent tie-aware mAP; the lower-index rule is kept beside it.
    assert on_disk["rows"] == on_disk["rows_tie_aware"]
    assert set(on_disk["rows_first_index"]) == set(on_disk["rows"]) - {"chance", "float"}
    assert len(on_disk["per_seed"]["LSH"]["2"]) == 2
    # the fair protocol: the reference rows at every column, each seed's validation split checked and recorded
    refs = on_disk["references_per_seed"]
    assert on_disk["references_seeds"] == [0, 1] and len(refs["chance"]) == len(refs["float"]) == 2
    assert on_disk["rows"]["chance"]["2"] == on_disk["rows"]["chance"]["4"] == pytest.approx(np.mean(refs["chance"]),
                                                                                             abs=0.006)
    assert on_disk["rows"]["chance"]["4"] < on_disk["rows"]["LSH"]["4"] < on_disk["rows"]["float"]["4"]
    for s in ("0", "1"):
        rec = on_disk["validation"]["per_seed"][s]
        assert rec["overlap"]["seed 0 queries"] == rec["overlap"]["seed 1 queries"] == {
            "validation queries": 0, "validation database": 0}
        assert rec["overlap"][f"seed {s} database"]["validation queries"] == rec["sizes"]["queries"]  # its training side
    assert on_disk["tuning"]["grids"]["BioHash"] == hashplug.encoders.BioHash.tuning_grid
    assert on_disk["tuning"]["grids"]["LSH"] == {} and on_disk["tuning"]["mode"].startswith("presets")
    assert on_disk["hyperparameters"]["BioHash"]["activity"] == 0.05
    # The blobs are well separated: a trained k-hot code must do far better than chance (10 %).
    assert on_disk["rows"]["BioHash"]["4"] > 30.0
    assert "BioHash" in bt.format_table(res)


def test_run_table_keeps_the_seeds_done_when_a_later_seed_fails(tiny_mnist, tmp_path, monkeypatch):
    """A long run writes its JSON after every seed (marked partial), so an interrupted run loses no seed."""
    out = tmp_path / "t.json"
    full = bt.run_table("mnist", tiny_mnist, ks=[2], seeds=[0], methods=["LSH"], limit=300, verbose=False)
    evaluate = bt.evaluate

    def failing_on_seed_1(m, k, split, dataset, seed, *a, **kw):
        if seed == 1:
            raise KeyboardInterrupt
        return evaluate(m, k, split, dataset, seed, *a, **kw)

    monkeypatch.setattr(bt, "evaluate", failing_on_seed_1)
    with pytest.raises(KeyboardInterrupt):
        bt.run_table("mnist", tiny_mnist, ks=[2], seeds=2, methods=["LSH"], out=out, limit=300, verbose=False)
    on_disk = json.loads(out.read_text())
    assert on_disk["partial"] == "seeds [0] of [0, 1]" and on_disk["seeds"] == [0]
    assert on_disk["rows"] == full["rows"] and on_disk["per_seed"] == full["per_seed"]
    # a finished run has no partial mark
    monkeypatch.setattr(bt, "evaluate", evaluate)
    bt.run_table("mnist", tiny_mnist, ks=[2], seeds=2, methods=["LSH"], out=out, limit=300, verbose=False)
    on_disk = json.loads(out.read_text())
    assert "partial" not in on_disk and on_disk["seeds"] == [0, 1]


def test_run_table_keeps_the_cells_done_inside_a_seed(tiny_mnist, tmp_path, monkeypatch, capsys):
    """The JSON is written after every (method, k) cell: a run stopped inside a seed keeps that seed's
    finished cells, and --merge takes them cell by cell."""
    from hashplug.cli import main

    out = tmp_path / "t.json"
    evaluate = bt.evaluate

    def failing_at_seed_1_k4(m, k, split, dataset, seed, *a, **kw):
        if seed == 1 and k == 4:
            raise KeyboardInterrupt
        return evaluate(m, k, split, dataset, seed, *a, **kw)

    monkeypatch.setattr(bt, "evaluate", failing_at_seed_1_k4)
    with pytest.raises(KeyboardInterrupt):
        bt.run_table("mnist", tiny_mnist, ks=[2, 4], seeds=2, methods=["LSH"], out=out, limit=300, verbose=False)
    monkeypatch.setattr(bt, "evaluate", evaluate)
    on_disk = json.loads(out.read_text())
    assert on_disk["partial"] == "seeds [0] of [0, 1]; seed 1: LSH k=2"
    assert on_disk["seeds"] == [0, 1]
    assert on_disk["seeds_by_cell"] == {"LSH": {"2": [0, 1], "4": [0]}}
    full = bt.run_table("mnist", tiny_mnist, ks=[2, 4], seeds=2, methods=["LSH"], limit=300, verbose=False)
    assert full["seeds_by_cell"] == {"LSH": {"2": [0, 1], "4": [0, 1]}} and "partial" not in full
    assert on_disk["per_seed"]["LSH"]["2"] == full["per_seed"]["LSH"]["2"]
    assert on_disk["per_seed"]["LSH"]["4"] == full["per_seed"]["LSH"]["4"][:1]
    # the missing cell run on its own, then merged: the whole run's table
    rest = tmp_path / "rest.json"
    assert main(["bench", "biohash-mnist", "--data", str(tiny_mnist), "--lengths", "4", "--methods", "LSH", "--max-rows",
                 "300", "--seed-list", "1", "--out", str(rest)]) == 0
    merged = tmp_path / "m.json"
    assert main(["bench", "biohash-mnist", "--merge", str(out), str(rest), "--out", str(merged)]) == 0
    m = json.loads(merged.read_text())
    assert m["per_seed"] == full["per_seed"] and m["rows"] == full["rows"]
    assert m["seeds_by_cell"] == full["seeds_by_cell"]


def test_runs_on_other_seeds_merge_into_one_table(tiny_mnist, tmp_path, capsys):
    """--seed-list runs some seeds; --merge gives the JSON of one run over all of them (a partial run counts
    for the seeds it finished)."""
    from hashplug.cli import main

    common = ["--data", str(tiny_mnist), "--lengths", "2", "4", "--methods", "LSH", "BioHash", "--epochs", "2",
              "--max-rows", "400"]
    whole = tmp_path / "whole.json"
    assert main(["bench", "biohash-mnist", *common, "--seeds", "3", "--out", str(whole)]) == 0
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["bench", "biohash-mnist", *common, "--seed-list", "0", "--out", str(a)]) == 0
    assert main(["bench", "biohash-mnist", *common, "--seed-list", "2", "1", "--out", str(b)]) == 0
    assert json.loads(b.read_text())["seeds"] == [2, 1]
    doc_a = json.loads(a.read_text())
    doc_a["partial"] = "seeds [0] of [0, 1, 2]"  # as an interrupted 3-seed run leaves it
    a.write_text(json.dumps(doc_a))
    merged = tmp_path / "m.json"
    assert main(["bench", "biohash-mnist", "--merge", str(a), str(b), "--out", str(merged)]) == 0
    assert "ours / paper" in capsys.readouterr().out
    m, w = json.loads(merged.read_text()), json.loads(whole.read_text())
    assert m["seeds"] == [0, 2, 1] and "partial" not in m
    for meth in ("LSH", "BioHash"):
        for k in ("2", "4"):
            # seeded runs are deterministic: the merged per-seed values are the whole run's, reordered
            assert sorted(m["per_seed"][meth][k]) == sorted(w["per_seed"][meth][k])
            assert m["rows"][meth][k] == pytest.approx(w["rows"][meth][k], abs=0.006)
            assert m["std"][meth][k] == pytest.approx(w["std"][meth][k], abs=0.006)
            assert m["rows_first_index"][meth][k] == pytest.approx(w["rows_first_index"][meth][k], abs=0.01)
            assert sorted(m["codes_sha256"][meth][k]) == sorted(w["codes_sha256"][meth][k])
    assert m["rows"] == m["rows_tie_aware"]
    for ref in ("chance", "float"):  # the reference rows: each seed's value once, the whole run's mean
        assert sorted(m["references_per_seed"][ref]) == sorted(w["references_per_seed"][ref])
        assert m["rows"][ref] == pytest.approx(w["rows"][ref], abs=0.006)
    # every seed's split was checked against all three seeds' test queries (--seed-list runs of a 3-seed table)
    assert set(m["validation"]["per_seed"]) == {"0", "1", "2"}
    assert m["validation"]["per_seed"]["0"] == w["validation"]["per_seed"]["0"]
    assert m["convergence"]["BioHash"]["4"]["units_ever_won"] == w["convergence"]["BioHash"]["4"]["units_ever_won"]
    # the same seed twice, another setting, or another dataset's table is refused
    with pytest.raises(ValueError, match="share seeds"):
        bt.merge_tables([a, a])
    other = json.loads(b.read_text())
    other["hyperparameters"]["BioHash"]["activity"] = 0.5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(other))
    with pytest.raises(ValueError, match="differs from"):
        bt.merge_tables([a, bad])
    lone = tmp_path / "lone.json"  # a one-seed table: its split was never checked against seeds 1 and 2
    assert main(["bench", "biohash-mnist", *common, "--seeds", "1", "--out", str(lone)]) == 0
    with pytest.raises(ValueError, match=r"not checked against the test queries of seeds \[1, 2\]"):
        bt.merge_tables([lone, b])
    assert main(["bench", "biohash-cifar10", "--merge", str(a), str(b), "--out", str(tmp_path / "x.json")]) != 0
    assert not (tmp_path / "x.json").exists()


def test_merge_takes_the_cells_at_the_preset(tiny_mnist, tmp_path, capsys):
    """A preset that changed at one k (by_k) keeps the older runs' other k: --merge compares each (method,
    k) cell's effective parameters with today's preset and lists the cells it leaves out."""
    from hashplug.cli import main

    common = ["--data", str(tiny_mnist), "--lengths", "2", "4", "--methods", "BioHash", "--epochs", "2", "--max-rows", "400"]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["bench", "biohash-mnist", *common, "--seed-list", "0", "--out", str(a)]) == 0
    assert main(["bench", "biohash-mnist", *common, "--seed-list", "1", "--out", str(b)]) == 0
    preset = bt.default_hp("mnist")["BioHash"]
    # b as a run of an older preset that had another activity at k = 4 only
    doc_b = json.loads(b.read_text())
    by_k = doc_b["hyperparameters"]["BioHash"].setdefault("by_k", {})
    by_k["4"] = {**by_k.get("4", {}), "activity": preset["activity"] * 2}
    b.write_text(json.dumps(doc_b))
    merged = tmp_path / "m.json"
    assert main(["bench", "biohash-mnist", "--merge", str(a), str(b), "--out", str(merged)]) == 0
    assert f"left out {b}: BioHash k=4 seeds [1] (differs from the preset in activity)" in capsys.readouterr().out
    m = json.loads(merged.read_text())
    assert m["seeds_by_cell"] == {"BioHash": {"2": [0, 1], "4": [0]}}
    pa, pb = json.loads(a.read_text())["per_seed"]["BioHash"], doc_b["per_seed"]["BioHash"]
    assert m["per_seed"]["BioHash"] == {"2": pa["2"] + pb["2"], "4": pa["4"]}
    assert m["rows"]["BioHash"]["4"] == pa["4"][0]
    assert m["hyperparameters"]["BioHash"] == json.loads(json.dumps(preset))
    assert m["left_out"] == [{"path": str(b), "method": "BioHash", "k": 4, "seeds": [1], "differs_in": ["activity"]}]
    # a run with no cell at the preset adds nothing: refused
    doc_b["hyperparameters"]["BioHash"]["by_k"]["2"] = {"activity": preset["activity"] * 2}
    b.write_text(json.dumps(doc_b))
    with pytest.raises(ValueError, match="no cell at the setting merged"):
        bt.merge_tables([a, b], target=bt.table_setting("mnist"))
    # without a target every run must share the whole setting (the BioConvHash merge)
    with pytest.raises(ValueError, match="differs from"):
        bt.merge_tables([a, b])


def test_run_table_rejects_unknown_names(tiny_mnist):
    with pytest.raises(ValueError, match="Unknown dataset 'svhn'"):
        bt.run_table("svhn", tiny_mnist)
    with pytest.raises(ValueError, match="Unknown methods \\['DeepHash'\\]"):
        bt.run_table("mnist", tiny_mnist, methods=["DeepHash"])


def test_cli_bench_table(tiny_mnist, tmp_path, capsys):
    from hashplug.cli import main

    out = tmp_path / "cli.json"
    rc = main(["bench", "biohash-mnist", "--data", str(tiny_mnist), "--lengths", "2", "--seeds", "1",
               "--methods", "LSH", "ITQ", "--max-rows", "500", "--out", str(out)])
    assert rc == 0
    assert set(json.loads(out.read_text())["rows"]) == {"LSH", "ITQ", "chance", "float"}
    printed = capsys.readouterr().out
    assert "ours / paper" in printed and "\nchance " in printed and "\nfloat " in printed


def test_methods_and_hyperparameters_come_from_the_registry():
    """No name list in the bench: the default methods are the encoders with a preset for the dataset."""
    assert bt.table_methods("mnist") == ["LSH", "PCAHash", "FlyHash", "SH", "ITQ", "NaiveBioHash", "BioHash"]
    assert bt.table_methods("cifar10") == bt.table_methods("mnist")
    assert bt._resolve_methods(["sh", "BioHash", "NAIVEBIOHASH", "SH"]) == ["SH", "BioHash", "NaiveBioHash"]
    # the presets, with the per-k overrides and the paper's activities
    assert bt.DEFAULT_HP["mnist"]["BioHash"]["by_k"] == {"2": {"p": 1.5}}
    assert bt._params("BioHash", 2, "mnist", 7, {}, None) == {
        "k": 2, "random_state": 7, "activity": 0.05, "p": 1.5, "delta": 0.0, "r": 2, "epochs": 30,
        "batch_size": 100, "lr": 0.05, "center": False,
    }  # fmt: skip
    assert bt._params("BioHash", 2, "cifar10", 0, {}, 3)["activity"] == 0.0025  # k = 2: validated separately
    assert bt._params("BioHash", 8, "cifar10", 0, {}, 3)["activity"] == 0.00125  # sparser than the paper's Fig. 4 optimum, validated
    assert bt._params("BioHash", 8, "cifar10", 0, {}, 3)["epochs"] == 3  # --epochs: iterative encoders only
    assert bt._params("FlyHash", 8, "mnist", 0, {}, 3) == {"k": 8, "random_state": 0, "expansion": 10, "sampling": 0.1}
    # --hp overrides a preset (by_k still applies unless replaced)
    hp = {"BioHash": {**bt.DEFAULT_HP["mnist"]["BioHash"], "p": 2.5}}
    assert bt._params("BioHash", 4, "mnist", 0, hp, None)["p"] == 2.5
    assert bt._params("BioHash", 2, "mnist", 0, hp, None)["p"] == 1.5


def test_hp_overrides_by_registry_name_and_the_tuned_method(tiny_mnist):
    res = bt.run_table("mnist", tiny_mnist, ks=[2], seeds=1, methods=["naivebiohash"], epochs=1, limit=300,
                       hp={"naivebiohash": {"delta": 0.0}}, verbose=False)
    assert res["hyperparameters"]["NaiveBioHash"]["delta"] == 0.0
    assert set(res["seconds_per_epoch"]) == {"NaiveBioHash"} and "NaiveBioHash" in res["convergence"]
    assert res["n_train"] > 0
    with pytest.raises(ValueError, match="Unknown methods"):
        bt.run_table("mnist", tiny_mnist, ks=[2], methods=["LSH"], hp={"DeepHash": {}}, limit=300, verbose=False)
    # `hashplug bench biohash-tune-mnist` without --methods tunes the one encoder that has a tuning grid
    method, grid = bt._tuning_setup("mnist", None, None)
    assert method == "BioHash" and grid == hashplug.encoders.BioHash.tuning_grid
    assert bt._tuning_setup("mnist", "naivebiohash", [{"delta": 0.0}]) == ("NaiveBioHash", [{"delta": 0.0}])
    with pytest.raises(ValueError, match="no default tuning grid"):
        bt._tuning_setup("mnist", "lsh", None)


def test_tune_keeps_the_settings_scored_when_a_later_one_fails(tiny_mnist, tmp_path, monkeypatch):
    """The validation search writes its JSON after every setting (marked partial), the final one unmarked."""
    out = tmp_path / "tune.json"
    grid = [{"delta": 0.0}, {"delta": 0.1}]
    full = bt.tune("mnist", tiny_mnist, ks=[2], grid=grid, method="naivebiohash", epochs=1, limit=300, out=out,
                   verbose=False)
    assert "partial" not in json.loads(out.read_text()) and len(full["rows"]) == 2
    evaluate = bt.evaluate

    def failing_on_the_second(m, k, split, dataset, seed, hp, *a, **kw):
        if hp[m]["delta"] == 0.1:
            raise KeyboardInterrupt
        return evaluate(m, k, split, dataset, seed, hp, *a, **kw)

    monkeypatch.setattr(bt, "evaluate", failing_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        bt.tune("mnist", tiny_mnist, ks=[2], grid=grid, method="naivebiohash", epochs=1, limit=300, out=out,
                verbose=False)
    on_disk = json.loads(out.read_text())
    assert on_disk["partial"] == "1 of 2 settings" and on_disk["rows"] == full["rows"][:1]
    assert on_disk["best"] == full["rows"][0]


def test_run_table_tunes_every_seed_on_its_own_split_with_one_budget(tiny_mnist):
    """tune_budget=N: every method with a grid scores N settings on each seed's own validation split (no test
    query of any reported seed in it) and each seed is tested at its own pick."""
    res = bt.run_table("mnist", tiny_mnist, ks=[2], seeds=2, methods=["LSH", "BioHash"], epochs=1, limit=400,
                       verbose=False, tune_budget=2)
    tun = res["tuning"]
    assert tun["settings_per_method"] == {"LSH": 1, "BioHash": 2} and tun["mode"].startswith("tuned per seed")
    for s in ("0", "1"):
        rows = tun["validation_scores"][s]["BioHash"]
        assert [r["params"] for r in rows] == [flat_setting(g) for g in tun["settings"]["BioHash"]]
        assert tun["chosen_per_seed"][s]["BioHash"] == max(rows, key=lambda r: r["mean"])["params"]
    assert res["validation"]["per_seed"]["0"]["rows_sha256"] != res["validation"]["per_seed"]["1"]["rows_sha256"]
