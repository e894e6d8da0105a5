"""``hashplug bench threads``: a smoke run on tiny data (no timing is asserted, only what each run reports)."""

from __future__ import annotations

import json

import pytest

from hashplug.cli import main


def test_threads_smoke_run_reports_each_situation_and_the_counts_used(tmp_path, capsys):
    out = tmp_path / "threads.json"
    assert main(["bench", "threads", "--rows", "600", "--dim", "16", "--lengths", "8", "--repeats", "1",
                 "--settings", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    (row,) = res["rows"]
    assert (row["tree"], row["workload"], row["setting"], row["timed_out"]) == ("this", "itq-fit", "1", 0)
    for situation in ("alone", "busy"):
        (run,) = row["runs"][situation]
        assert run["seconds"] > 0 and run["threads_used"] == [1], run  # the fixed count, set by the policy
    assert row["ratio"] == pytest.approx(row["busy_s"] / row["alone_s"], abs=0.01)
    assert res["env"]["threads_setting"] in ("auto", 1, 2)  # this process's own setting, recorded
    printed = capsys.readouterr().out
    assert "busy / alone" in printed and "threads used" in printed


def test_threads_refuses_a_tree_without_the_package(tmp_path):
    with pytest.raises(SystemExit, match="holding the hashplug package"):
        main(["bench", "threads", "--tree", f"x={tmp_path}", "--rows", "10"])
