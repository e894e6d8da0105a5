"""The MIHash benches (hashplug.bench.mihash) on small synthetic data: JSON shapes, PNGs, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hashplug.bench import mihash as mb
from hashplug.cli import main as cli_main
from hashplug.validation import HashplugError

pytest.importorskip("torch")


def test_supervised_split_is_disjoint_and_per_class():
    y = np.repeat(np.arange(4), 50)
    q, tr, db = mb.supervised_split(y, 0, train_per_class=10, query_per_class=5)
    assert len(set(q) | set(tr) | set(db)) == len(q) + len(tr) + len(db) == 200
    assert np.bincount(y[q]).tolist() == [5] * 4 and np.bincount(y[tr]).tolist() == [10] * 4
    q2, tr2, _ = mb.supervised_split(y, 1, train_per_class=10, query_per_class=5)
    assert not np.array_equal(q, q2)


def test_validation_database_is_disjoint_from_validation_training_items():
    """The validation database must be unseen in training, as the test protocol's database is."""
    y = np.repeat(np.arange(3), 20)[np.random.default_rng(0).permutation(60)]
    tr, q, db = mb.validation_thirds(y, 20, seed=0)
    assert len(set(tr) | set(q) | set(db)) == len(tr) + len(q) + len(db) == 60
    # per class: 20 // 10 = 2 queries, 3 * 20 // 10 = 6 database items, 12 training items
    for part, n in ((q, 2), (db, 6), (tr, 12)):
        np.testing.assert_array_equal(np.bincount(y[part], minlength=3), [n] * 3)
    for a, b in zip((tr, q, db), mb.validation_thirds(y, 20, seed=0)):
        np.testing.assert_array_equal(a, b)  # deterministic for a seed
    assert [len(a) for a in mb.validation_thirds(np.repeat(np.arange(2), 3), 3, seed=1)] == [2, 2, 2]  # 1 each


def test_correlation_cli(tiny_mnist, tmp_path, capsys):
    out, png = tmp_path / "corr.json", tmp_path / "corr.png"
    assert cli_main(["bench", "mihash-correlation", "--data", str(tiny_mnist), "--maps", "6", "--out", str(out),
                     "--png", str(png)]) == 0
    assert "Pearson r(MI, mAP)" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["n_maps"] == 6 and len(res["rows"]) == 6 and res["bits"] == 32
    assert -1 <= res["pearson"] <= 1 and res["paper_pearson"] == 0.98
    assert all(0 < r["map"] <= 1 and r["mi"] >= 0 for r in res["rows"])
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_supervised_cli_json_shape_and_histograms(tiny_mnist, tmp_path):
    out, png = tmp_path / "sup.json", tmp_path / "hist.png"
    methods = ["MIHash-linear", "DPSH-linear", "LSH", "ITQ", "BioHash"]
    assert cli_main(["bench", "mihash-mnist", "--data", str(tiny_mnist), "--lengths", "8", "16", "--epochs", "3",
                     "--seeds", "2", "--methods", *methods, "--out", str(out), "--png", str(png)]) == 0
    res = json.loads(out.read_text())
    for key in ("rows", "per_seed", "std", "fit_seconds", "chosen", "validation", "budget", "protocol", "histograms"):
        assert key in res, key
    assert set(res["rows"]) == set(methods) | {"chance", "float"}
    assert all(set(v) == {"8", "16"} for v in res["rows"].values())
    # the references: the same value at every length, chance below every trained row, float on the same inputs
    assert res["rows"]["chance"]["8"] == res["rows"]["chance"]["16"] < min(res["rows"][m]["16"] for m in methods)
    assert res["rows"]["float"]["8"] == res["rows"]["float"]["16"] > res["rows"]["chance"]["8"]
    # every seed tuned on its own split, disjoint from every seed's test queries and its own test database
    assert set(res["validation_overlap"]) == {"0", "1"} and set(res["chosen_per_seed"]) == {"0", "1"}
    for rec in res["validation_overlap"].values():
        assert rec["rows_sha256"] and all(v == 0 for o in rec["overlap"].values() for v in o.values())
        assert {"seed 0 queries", "seed 1 queries"} <= set(rec["overlap"])
    assert res["validation_overlap"]["0"]["rows_sha256"] != res["validation_overlap"]["1"]["rows_sha256"]
    # the same budget for both gradient methods, weight decay in both linear grids
    tun = res["tuning"]
    assert tun["settings_per_method"]["MIHash-linear"] == tun["settings_per_method"]["DPSH-linear"] == 18
    assert tun["grids"]["DPSH-linear"]["weight_decay"] == tun["grids"]["MIHash-linear"]["weight_decay"] == [5e-4, 5e-3, 2e-2]
    assert tun["settings_per_method"]["LSH"] == 1 and tun["grids"]["LSH"] == {}
    assert len(res["validation"]["DPSH-linear"]) == 18
    assert {c["weight_decay"] for c in res["validation"]["DPSH-linear"]} == {5e-4, 5e-3, 2e-2}
    assert all(len(c["val_map_per_seed"]) == 2 for c in res["validation"]["DPSH-linear"])
    assert all(len(v) == 2 for v in res["per_seed"]["LSH"].values())
    assert set(res["validation"]) == {"MIHash-linear", "DPSH-linear"}
    assert res["chosen"]["MIHash-linear"]["epochs"] == 3
    h = res["histograms"]
    assert len(h["after"]["p_pos"]) == 17 and sum(h["after"]["p_pos"]) == pytest.approx(1, abs=1e-3)
    assert png.read_bytes()[:4] == b"\x89PNG"
    # the synthetic classes are separable: supervised MIHash beats LSH
    assert res["rows"]["MIHash-linear"]["16"] > res["rows"]["LSH"]["16"]


def test_unsupervised_cli(fake_ag_news, tmp_path, capsys):
    out = tmp_path / "unsup.json"
    assert cli_main(["bench", "mihash-unsupervised", "--data", str(fake_ag_news), "--lengths", "8", "16",
                     "--hp", json.dumps({"epochs": 2}), "--grid", json.dumps([{"distance_percentile": 5.0}]),
                     "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["rows"]) == {"sign-32", "ITQ", "MIHash"}  # the sign of the 32 floats
    assert set(res["rows"]["MIHash"]) == {"8", "16"}
    for row in res["rows"]["MIHash"].values():
        assert 0 <= row["recall10"] <= row["recall10_rescored"] <= 1
    assert res["chosen"]["distance_metric"] == "cosine" and len(res["validation"]) == 1


def test_unsupervised_cli_trains_the_named_method(fake_ag_news, tmp_path, capsys):
    out = tmp_path / "unsup_ad.json"
    assert cli_main(["bench", "mihash-unsupervised", "--data", str(fake_ag_news), "--lengths", "16", "--methods",
                     "angulardistill", "--hp", json.dumps({"n_neighbours": 8, "lr": 0.01}), "--val-splits", "2",
                     "--grid", json.dumps([{"epochs": 0}, {"epochs": 3}]), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["method"] == "AngularDistillHash"
    assert set(res["rows"]) == {"sign-32", "ITQ", "AngularDistillHash"}
    assert [v["epochs"] for v in res["validation"]] == [0, 3] and res["chosen"]["n_neighbours"] == 8
    assert all(len(v) == 3 for by_b in res["per_seed"].values() for v in by_b.values())  # --seeds 3 (default)
    for name, by_b in res["per_seed"].items():
        for b, vals in by_b.items():
            assert res["rows"][name][b]["recall10_rescored"] == pytest.approx(np.mean(vals), abs=1e-3)
    assert "2 split(s)" in res["validation_splits"]
    capsys.readouterr()
    assert cli_main(["bench", "mihash-unsupervised", "--data", str(fake_ag_news), "--methods", "mihash", "dpsh"]) != 0
    assert "one method per run; got --methods ['mihash', 'dpsh']" in capsys.readouterr().err
    assert cli_main(["bench", "mihash-unsupervised", "--data", str(fake_ag_news), "--methods", "dpsh"]) != 0
    assert "'dpsh' is not known; available: ['angulardistill', 'mihash']" in capsys.readouterr().err


def test_supervised_cli_takes_a_validation_grid(tiny_mnist, tmp_path):
    out = tmp_path / "grid.json"
    grid = '[{"optimizer": "adam", "lr": 0.001, "gamma": 5.0}, {"optimizer": "adam", "lr": 0.01, "gamma": 10.0}]'
    assert cli_main(["bench", "mihash-mnist", "--data", str(tiny_mnist), "--lengths", "8", "--epochs", "2", "--seeds", "1",
                     "--methods", "MIHash-linear", "--grid", grid, "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [c["gamma"] for c in res["validation"]["MIHash-linear"]] == [5.0, 10.0]
    assert res["chosen"]["MIHash-linear"]["gamma"] in (5.0, 10.0)


def test_supervised_grid_per_method(tiny_mnist, tmp_path, capsys):
    """A dict grid tunes each named method on its own settings (same count each); others keep the default."""
    out = tmp_path / "grid2.json"
    grid = {"MIHash-linear": [{"optimizer": "adam", "lr": 0.001, "gamma": 5.0}],
            "DPSH-linear": [{"optimizer": "adam", "lr": 0.001, "eta": 3.0}]}
    assert cli_main(["bench", "mihash-mnist", "--data", str(tiny_mnist), "--lengths", "8", "--epochs", "2", "--seeds", "1",
                     "--methods", "MIHash-linear", "DPSH-linear", "--grid", json.dumps(grid), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["chosen"]["MIHash-linear"]["gamma"] == 5.0 and res["chosen"]["DPSH-linear"]["eta"] == 3.0
    assert cli_main(["bench", "mihash-mnist", "--data", str(tiny_mnist), "--lengths", "8", "--epochs", "1", "--seeds", "1",
                     "--methods", "MIHash-linear", "--grid", '{"MIHash-deep": []}', "--out", str(out)]) != 0
    assert "unknown methods ['MIHash-deep']; available: ['MIHash-linear'" in capsys.readouterr().err
    with pytest.raises(HashplugError, match="unknown methods"):
        mb.run_supervised("mnist", tiny_mnist, bits=[8], methods=["MIHash-linear"], grid={"x": []}, progress=False)


def test_supervised_tune_each_bits_picks_per_code_length(tiny_mnist, tmp_path, monkeypatch):
    """--tune-each-bits validates the grid at every code length and trains each length with its own pick."""
    out = tmp_path / "each.json"
    grid = [{"optimizer": "adam", "lr": 0.001, "gamma": 5.0}, {"optimizer": "adam", "lr": 0.001, "gamma": 10.0}]
    made: list[tuple[int, float]] = []
    real_make = mb._make

    def spy(name, b, seed, extra, dataset, png):
        made.append((int(b), float(extra.get("gamma", 0.0)), int(extra.get("epochs", -1))))
        return real_make(name, b, seed, extra, dataset, png)

    monkeypatch.setattr(mb, "_make", spy)
    assert cli_main(["bench", "mihash-mnist", "--data", str(tiny_mnist), "--lengths", "4", "8", "--epochs", "2",
                     "--seeds", "1", "--methods", "MIHash-linear", "--grid", json.dumps(grid), "--tune-each-bits",
                     "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["tuned_at_bits"] == "each"
    assert set(res["validation"]["MIHash-linear"]) == {"4", "8"}
    assert [c["gamma"] for c in res["validation"]["MIHash-linear"]["4"]] == [5.0, 10.0]
    chosen = res["chosen"]["MIHash-linear"]
    assert set(chosen) == {"4", "8"} and all(c["epochs"] == 2 for c in chosen.values())
    # validation: 2 settings x 1 split (one per reported seed) at each length; then the test fit at each
    # length uses that length's pick (plus the untrained "before" model of the histograms, epochs 0)
    assert [b for b, _, _ in made[:4]] == [4] * 2 + [8] * 2
    test_fit = [t for t in made[4:] if t[2] == 2]
    assert sorted(b for b, _, _ in test_fit) == [4, 8]
    for b, gamma, _ in test_fit:
        assert gamma == chosen[str(b)]["gamma"]


def test_budget_check_script_rows_per_bits_method_and_budget(tiny_mnist, tmp_path):
    """benchmarks/mihash_budget_check.py: one validation row per (bits, method, budget), histories recorded."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "mihash_budget_check.py"
    spec = importlib.util.spec_from_file_location("mihash_budget_check", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "budget.json"
    settings = {"MIHash-linear": {"optimizer": "adam", "lr": 0.01},
                "DPSH-linear": [{"optimizer": "adam", "lr": 0.01}, {"optimizer": "adam", "lr": 0.01, "weight_decay": 0.05}]}
    rows = mod.main(["--data", str(tiny_mnist), "--bits", "8", "--budgets", "[[2, 64], [12, 32]]",
                     "--settings", json.dumps(settings), "--out", str(out)])
    assert [(r["method"], r["setting"].get("weight_decay"), r["epochs"], r["batch_size"]) for r in rows] == [
        ("MIHash-linear", None, 2, 64), ("MIHash-linear", None, 12, 32), ("DPSH-linear", None, 2, 64),
        ("DPSH-linear", None, 12, 32), ("DPSH-linear", 0.05, 2, 64), ("DPSH-linear", 0.05, 12, 32)]
    assert json.loads(out.read_text()) == rows
    for r in rows:
        assert 0 < r["val_map"] <= 100 and len(r["per_split"]) == 2
        # epochs 10 / 50 exist only in the longer run: [mid, last] for 2 epochs, [10, mid, last] for 12
        assert [len(h) for h in r["history_10_50_mid_last"]] == [2 if r["epochs"] == 2 else 3] * 2


def test_angulardistill_pool_check_script(fake_ag_news, tmp_path):
    """benchmarks/angulardistill_pool_check.py: one row per setting; training lowers the KL; the untrained row
    is the ITQ start (no history); pool <= n - 1 works as well as the whole set."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "angulardistill_pool_check.py"
    spec = importlib.util.spec_from_file_location("angulardistill_pool_check", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "pool.json"
    settings = [{"epochs": 0}, {"epochs": 6, "lr": 0.01, "B": 64}, {"epochs": 6, "lr": 0.01, "B": 64, "pool": 30}]
    rows = mod.main([json.dumps(settings), "--data", str(fake_ag_news), "--k", "16", "--splits", "2",
                     "--val-per-class", "10", "--out", str(out)])
    assert [r["setting"] for r in rows] == settings
    assert json.loads(out.read_text())["rows"] == rows
    assert rows[0]["kl_per_epoch"] == [[], []]
    for r in rows:
        assert 0.0 <= r["val_recall10_rescored"] <= 1.0 and len(r["per_split"]) == 2
    for r in rows[1:]:
        for h in r["kl_per_epoch"]:
            assert len(h) == 6 and all(np.isfinite(h)) and h[-1] < h[0]


def test_fair_validation_splits_stay_in_each_seeds_training_items():
    """Each seed's split: inside its own training items, three disjoint parts, no test query of any seed."""
    y = np.repeat(np.arange(4), 120)[np.random.default_rng(3).permutation(480)]
    splits, records = mb.fair_validation_splits(y, [0, 1, 2], train_per_class=40, query_per_class=10)
    queries = [mb.supervised_split(y, s, 40, 10)[0] for s in (0, 1, 2)]
    for s, sp in splits.items():
        _, tr, db = mb.supervised_split(y, s, 40, 10)
        parts = [sp["training"], sp["queries"], sp["database"]]
        assert sum(len(p) for p in parts) == len(np.unique(np.concatenate(parts)))  # disjoint
        assert all(np.isin(p, tr).all() for p in parts)  # the seed's training items only
        assert not np.isin(np.concatenate(parts), np.concatenate(queries)).any()
        assert np.bincount(y[sp["queries"]], minlength=4).tolist() == [4] * 4  # 40 // 10 per class
        assert len(sp["database"]) == 4 * 12  # 3 * 40 // 10 per class on average
        assert records[str(s)]["overlap"][f"seed {s} database"] == {
            "validation training": 0, "validation queries": 0, "validation database": 0}
        assert records[str(s)]["sizes"]["training"] == len(sp["training"])
