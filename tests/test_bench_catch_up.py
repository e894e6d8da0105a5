"""``hashplug bench catch-up`` on small settings: one row per added size, each caught up by reading only the added
rows (never rebuilt), identical to a fresh build, the searched row at distance 0 (timings are not asserted)."""

from __future__ import annotations

import json

import pytest

from hashplug.cli import main

pytest.importorskip("lancedb")


def test_the_catch_up_suite_runs_on_small_settings(tmp_path, capsys):
    out = tmp_path / "catch_up.json"
    assert main(["bench", "catch-up", "--base", "900", "--added", "300", "1300", "--dim", "8", "--lengths", "32",
                 "--chunk-size", "500", "--repeats", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "catch-up / build" in printed and "= fresh build" in printed
    res = json.loads(out.read_text())
    assert res["suite"] == "catch-up" and [r["added"] for r in res["rows"]] == [300, 1300]
    assert set(res["by_added"]) == {"300", "1300"}
    for r in res["rows"]:
        assert res["by_added"][str(r["added"])] == {k: r[k] for k in ("build_s", "catch_up_s", "ratio")}
        assert r["rows"] == 900 + r["added"] and r["commits_added"] == -(-r["added"] // 500)
        assert r["rows_read"] == r["added"] and r["fragments_read"] == r["commits_added"]  # the new rows only
        assert not r["rebuilt"] and r["identical_to_fresh"] and r["probe_at_distance_0"]
        assert len(r["runs"]["catch_up_s"]) == len(r["runs"]["build_s"]) == 2
        assert r["ratio"] == pytest.approx(r["catch_up_s"] / r["build_s"], rel=0.1)  # of unrounded medians


def test_the_catch_up_suite_refuses_bad_settings(capsys):
    """Errors name the flag and the value, before anything is built."""
    assert main(["bench", "catch-up", "--lengths", "32", "64"]) == 2
    assert "takes one --lengths (the LSH code length); got [32, 64]" in capsys.readouterr().err
    assert main(["bench", "catch-up", "--added", "0"]) == 2
    assert "--added" in capsys.readouterr().err
