"""``hashplug bench load`` on small settings: every row lands once, the reader searched beside the writer
without an error, every probe row comes back at distance 0, and the JSON has the documented shape."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("lancedb")


def test_load_bench_small(tmp_path):
    from hashplug.bench.load import format_load, run_load

    res = run_load(rows=6000, dim=16, bits=32, chunk_size=1000, probes=5, workdir=tmp_path, progress=False)
    rows = {r["phase"].split(" (")[0]: r for r in res["rows"]}
    ing = rows["ingest"]
    assert ing["rows_in_table"] == 6000 and ing["commits"] == 6
    assert ing["peak_rss_mb"] >= ing["rss_before_mb"] > 0
    during = rows["search during ingest"]
    assert during["errors"] == 0, during["error_messages"]
    assert during["searches"] >= 1  # the reader is waited for until its first search
    probes = rows["5 probe searches through the index"]
    assert probes["found_at_distance_0"] == 5
    assert rows["first search after ingest"]["self_at_distance_0"] == 1
    assert "ingest" in format_load(res)
    assert not list(tmp_path.iterdir())  # the database is removed afterwards


def test_load_bench_cli_writes_json(tmp_path, capsys):
    from hashplug.cli import main

    out = tmp_path / "load.json"
    assert main(["bench", "load", "--rows", "2000", "--dim", "8", "--lengths", "16", "--chunk-size", "500",
                 "--no-search", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["suite"] == "load" and res["rows"][0]["rows_in_table"] == 2000
    assert res["rows"][1]["searches"] == 0
    assert "rows/s" in capsys.readouterr().out
