"""``hashplug bench search`` on tiny sizes: JSON shape, exactness of hashplug's index against LanceDB flat."""

from __future__ import annotations

import json

import numpy as np
import pytest

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
                     "--limit-results", "10", "--bound-seconds", "0.05", "--out", str(out), "--png", str(png)]) == 0
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
    # FAISS as the only peer (LanceDB's tables and indexes are not what is merged; test_search_bench_cli has them)
    assert cli_main(["bench", "search", "--sizes", "500", "--codes", "dense-64", "--queries", "3",
                     "--limit-results", "5", "--peers", "faiss", "--bound-seconds", "0.05", "--out", str(a)]) == 0
    assert cli_main(["bench", "search", "--sizes", "500", "700", "--codes", "dense-64", "khot-320-16", "--queries", "3",
                     "--limit-results", "5", "--peers", "faiss", "--bound-seconds", "0.05", "--out", str(b)]) == 0
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


@pytest.fixture
def baseline_cache(request, tmp_path):
    """Where the bench keeps its copy of a baseline tree: pytest's cache folder, which lasts between runs (numba's
    compiled kernels of the copy with it), else a temporary one."""
    cache = getattr(request.config, "cache", None)
    return cache.mkdir("hashplug-bench-baseline") if cache is not None else tmp_path / "baseline-cache"


def test_search_bench_batched_and_khot_summaries(tmp_path, baseline_cache):
    """The rows issue 31 asks for: batched q/s against FAISS (dense) and k-hot at several activities, with a
    baseline tree timed on the same codes (here this tree itself, imported from a private copy: it must return
    the exact result too)."""
    from pathlib import Path

    out = tmp_path / "s.json"
    root = Path(__file__).resolve().parents[1]
    assert cli_main(["bench", "search", "--sizes", "5000", "--codes", "dense-256", "khot-320-16", "khot-320-1",
                     "--queries", "12", "--limit-results", "7", "--peers", "faiss", "--baseline", str(root),
                     "--baseline-cache", str(baseline_cache), "--repeats", "2", "--bound-seconds", "0.05",
                     "--out", str(out)]) == 0
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


def test_the_baseline_copy_is_made_once_checked_at_each_use_and_pruned(tmp_path, monkeypatch):
    """The copy of a baseline tree lasts between runs (numba's cache of its kernels lives in it): the same tree
    reuses it; a copy whose files changed is made again; an edited tree gets a copy of its own; only the most
    recently used BASELINE_COPIES are kept."""
    import shutil
    from pathlib import Path

    src = tmp_path / "tree" / "hashplug"
    shutil.copytree(Path(sb.__file__).resolve().parents[1], src, ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "cache"
    first = sb._baseline_copy(src, cache, "hashplug_baseline")
    assert first.parent.parent == cache and sb._source_digest(first) == sb._source_digest(src)
    (first / "index" / "__pycache__").mkdir(exist_ok=True)
    (first / "index" / "__pycache__" / "kernels.nbi").write_bytes(b"numba's cache")  # stands for numba's files
    assert sb._baseline_copy(src, cache, "hashplug_baseline") == first
    assert (first / "index" / "__pycache__" / "kernels.nbi").exists()  # reused as it was
    (first / "index" / "core.py").write_text("# altered\n")
    assert sb._baseline_copy(src, cache, "hashplug_baseline") == first
    assert (first / "index" / "core.py").read_bytes() == (src / "index" / "core.py").read_bytes()
    assert not (first / "index" / "__pycache__").exists()  # made again from the tree
    (src / "extra.py").write_text("X = 1\n")  # an edited tree
    second = sb._baseline_copy(src, cache, "hashplug_baseline")
    assert second != first and (second / "extra.py").exists() and first.exists()
    monkeypatch.setattr(sb, "BASELINE_COPIES", 2)
    (src / "extra.py").write_text("X = 2\n")
    import os

    for partial, age in ((".partial-killed", 7200), (".partial-running", 10)):  # a killed run's, a live one's
        (cache / partial).mkdir()
        os.utime(cache / partial, (os.path.getmtime(cache) - age,) * 2)
    third = sb._baseline_copy(src, cache, "hashplug_baseline")
    assert sorted(d.name for d in cache.iterdir()) == sorted([second.parent.name, third.parent.name,
                                                              ".partial-running"])


@pytest.mark.parametrize("bad", [0, -1, 61, True, "0.5"])
def test_bound_seconds_is_refused_naming_the_value(bad):
    from hashplug.validation import HashplugError

    with pytest.raises(HashplugError, match=rf"bound_seconds={bad!r} must be a number of seconds in \(0, 60\]"):
        sb.run_search_bench(rows=[10], codes=["dense-64"], bound_seconds=bad, progress=False)
