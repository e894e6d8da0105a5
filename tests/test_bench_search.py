"""``hashplug bench search`` on tiny sizes: JSON shape, exactness of hashplug's index against LanceDB flat."""

from __future__ import annotations

import json

import numpy as np

from hashplug.bench import search as sb
from hashplug.cli import main as cli_main


def test_random_codes_have_the_asked_shape():
    rng = np.random.default_rng(0)
    packed, csr = sb._random_codes("khot", 40, 5, 30, rng)
    assert packed.shape == (30, 5) and csr[1].shape == (150,)
    assert all(np.unique(csr[1][i * 5 : (i + 1) * 5]).size == 5 for i in range(30))
    packed, csr = sb._random_codes("dense", 64, 64, 7, rng)
    assert packed.shape == (7, 8) and csr is None


def test_search_bench_cli(tmp_path, capsys):
    out = tmp_path / "search.json"
    png = tmp_path / "latency.png"
    assert cli_main(["bench", "search", "--sizes", "800", "--codes", "dense-64", "khot-320-16", "--queries", "5",
                     "--limit-results", "10", "--out", str(out), "--png", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    res = json.loads(out.read_text())
    assert set(res["rows"]) == {"dense-64", "khot-320-16"}
    dense = res["rows"]["dense-64"]["800"]
    assert {"hashplug-index", "lancedb-flat"} <= set(dense)
    for cell in (c for c in dense.values() if "error" not in c):
        assert {"ms_per_query", "qps_batched", "recall", "ratio_to_faiss"} <= set(cell)
    assert dense["lancedb-flat"]["recall"] == 1.0  # exact scans agree on the distances
    assert res["rows"]["khot-320-16"]["800"]["lancedb-label-list"]["recall"] == 1.0
    assert res["memory"]["dense-64"]["800"]["ratio"] <= 1.2  # row ids as runs: the index is about the codes
    if "hashplug-faiss" in dense:  # the FAISS backend (hashplug[fast]) gives the exact index's result
        assert dense["hashplug-faiss"]["identical_to_exact"] is True
    if "hashplug-mih" in dense:  # multi-index hashing (numba): exact at both limits
        assert dense["hashplug-mih"]["identical_to_exact"] and dense["hashplug-mih@10"]["identical_to_exact"]
        assert res["memory"]["dense-64"]["800"]["mih_bytes_per_row"] > 8
    hnsw = [c for name, c in dense.items() if name.startswith("lancedb-ivf-hnsw-flat")]
    assert hnsw and all("optimize_after_add" in c or "error" in c for c in hnsw)
    assert res["bound"]["memory_gb_per_s"] > 0
    assert "torch_loaded" in res


def test_search_runs_merge_cell_by_cell(tmp_path, capsys):
    """--merge: a later run fills the cells an earlier one lacks (e.g. a size it could not finish); a cell both
    have comes from the first; anything but a search result is refused."""
    a, b, out, png = (tmp_path / n for n in ("a.json", "b.json", "m.json", "m.png"))
    assert cli_main(["bench", "search", "--sizes", "500", "--codes", "dense-64", "--queries", "3",
                     "--limit-results", "5", "--out", str(a)]) == 0
    assert cli_main(["bench", "search", "--sizes", "500", "700", "--codes", "dense-64", "khot-320-16", "--queries", "3",
                     "--limit-results", "5", "--out", str(b)]) == 0
    first = json.loads(a.read_text())["rows"]["dense-64"]["500"]
    assert cli_main(["bench", "search", "--merge", str(a), str(b), "--out", str(out), "--png", str(png)]) == 0
    res = json.loads(out.read_text())
    assert res["rows"]["dense-64"]["500"] == first
    assert set(res["rows"]["dense-64"]) == {"500", "700"} and set(res["rows"]["khot-320-16"]) == {"500", "700"}
    assert res["sources"][str(a)] == ["dense-64@500"] and "dense-64@500" not in res["sources"][str(b)]
    assert res["memory"]["khot-320-16"]["700"]["ratio"] <= 1.2
    assert png.read_bytes()[:4] == b"\x89PNG"
    bad = tmp_path / "bad.json"
    bad.write_text('{"suite": "mihash-mnist"}')
    assert cli_main(["bench", "search", "--merge", str(bad), "--out", str(out)]) != 0
    assert "is not a `hashplug bench search` result" in capsys.readouterr().err


def test_search_bench_batched_and_khot_summaries(tmp_path):
    """The rows issue 31 asks for: batched q/s against FAISS (dense) and k-hot at several activities, with a
    baseline tree timed on the same codes (here this tree itself, imported from a private copy: it must return
    the exact result too)."""
    from pathlib import Path

    out = tmp_path / "s.json"
    root = Path(__file__).resolve().parents[1]
    assert cli_main(["bench", "search", "--sizes", "5000", "--codes", "dense-256", "khot-320-16", "khot-320-1",
                     "--queries", "12", "--limit-results", "7", "--peers", "faiss", "--baseline", str(root),
                     "--repeats", "2", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    dense = res["rows"]["dense-256"]["5000"]
    assert dense["baseline-index"]["identical_to_exact"] is True
    assert "lancedb-flat" not in dense  # --peers faiss: no LanceDB rows
    b = res["batched"]["dense-256"]["5000"]
    assert b["hashplug_qps"] == dense["hashplug-index"]["qps_batched"] and b["baseline_qps"] > 0
    kh = res["khot"]
    assert kh["khot-320-16"]["5000"]["activity"] == 0.05 and abs(kh["khot-320-1"]["5000"]["activity"] - 1 / 320) < 1e-5
    # 16 of 320 units: each query touches ~0.8 entries per row (counted); one unit: ~0.003 (its postings alone)
    assert kh["khot-320-16"]["5000"]["method"] == "count" and kh["khot-320-1"]["5000"]["method"] == "postings"
    assert kh["khot-320-16"]["5000"]["build_s"] >= 0 and "baseline_build_s" in kh["khot-320-16"]["5000"]
    if res["faiss"] is not None:
        assert b["qps_ratio_to_faiss"] == round(b["hashplug_qps"] / b["faiss_qps"], 3)
        assert kh["khot-320-16"]["5000"]["speedup_vs_faiss"] > 0
    assert res["baseline"]["path"] == str(root)
