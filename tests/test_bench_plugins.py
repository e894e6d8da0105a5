"""The bench as plug-ins: every suite is its own ``hashplug bench`` subcommand with only its own flags, read
from one registry; adding a suite is one file (a toy suite, written here as a module file, proves it)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from hashplug.cli import main

ROOT = Path(__file__).resolve().parents[1]

#: The suite names ``hashplug bench`` has taken since 0.1.0 (several served by one module).
OLD_NAMES = (
    "biohash-mnist", "biohash-cifar10", "biohash-tune-mnist", "biohash-tune-cifar10", "bioconvhash-mnist",
    "bioconvhash-cifar10", "encode", "ingest", "load", "ag-news", "mihash-correlation", "mihash-mnist",
    "mihash-ag-news", "mihash-unsupervised", "search", "neurohash-ablation", "neurohash-spatial", "neurohash-tune",
)

TOY = '''
"""A toy benchmark suite: one file, registered when imported."""
from __future__ import annotations

import argparse
from typing import Any

from hashplug.bench.common import write_json
from hashplug.bench.suite import Suite, add_out, register_suite


@register_suite
class ToySuite(Suite):
    names = ("toy-echo", "toy-echo-twice")
    help = "a toy suite: repeats a word"

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        parser.add_argument("--word", default="hash", help="the word to repeat")
        parser.add_argument("--times", type=int, default=1, help="repetitions")
        add_out(parser)

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        n = args.times * (2 if name == "toy-echo-twice" else 1)
        res = {"suite": name, "rows": [{"word": args.word}] * n}
        write_json(res, args.out)
        return res

    def print(self, name: str, result: dict[str, Any], args: argparse.Namespace) -> None:
        print(" ".join(r["word"] for r in result["rows"]))
'''


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def _flags(text: str) -> set[str]:
    """The long options a help text lists (its options section)."""
    return set(re.findall(r"^\s+(--[a-z][a-z0-9-]*)", text.split("options:", 1)[1], flags=re.M)) - {"--help"}


def _option_helps(name: str) -> dict[str, str]:
    """``{flag: help text}`` of the suite ``name``'s subcommand parser."""
    from hashplug.cli import build_parser

    bench = next(a for a in build_parser()._actions if a.dest == "command").choices["bench"]
    bench.format_help()  # the suites are added when the bench parser is first used
    parser = next(a for a in bench._actions if a.dest == "suite").choices[name]
    return {opt: a.help or "" for a in parser._actions for opt in a.option_strings if opt.startswith("--")}


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")


def test_every_old_suite_name_is_its_own_subcommand_with_its_own_flags(capsys):
    pages = {name: _help(["bench", name], capsys) for name in OLD_NAMES}
    for name, page in pages.items():
        assert page.startswith(f"usage: hashplug bench {name} "), page[:200]
        assert "--out" in _flags(page)
    # search lists its flags only; no suite lists them all (28 flags were shared by every suite)
    assert {"--sizes", "--codes", "--queries", "--limit-results", "--threads", "--merge", "--png"} <= _flags(pages["search"])
    assert not _flags(pages["search"]) & {"--kci", "--seeds", "--maps", "--epochs", "--hp", "--shadows", "--max-rows", "--limit"}
    assert _flags(pages["load"]) == {"--rows", "--dim", "--lengths", "--k", "--chunk-size", "--no-search", "--out"}
    assert "--kci" in _flags(pages["bioconvhash-mnist"]) and "--kci" not in _flags(pages["biohash-mnist"])
    assert "--tune-each-bits" in _flags(pages["mihash-ag-news"]) and "--val-splits" not in _flags(pages["mihash-ag-news"])
    assert "--png" in _flags(pages["neurohash-spatial"]) and "--png" not in _flags(pages["neurohash-ablation"])
    assert "--grid" in _flags(pages["neurohash-tune"]) and "--grid" not in _flags(pages["neurohash-spatial"])


def test_bench_help_lists_every_suite(capsys):
    page = _help(["bench"], capsys)
    for name in OLD_NAMES:
        assert re.search(rf"^\s+{re.escape(name)}\s", page, flags=re.M), name


@pytest.mark.parametrize("argv, flag", [
    (["bench", "search", "--kci", "5", "--codes", "nosuch"], "--kci 5"),
    (["bench", "load", "--rows", "0", "--methods", "lsh"], "--methods lsh"),
    (["bench", "ingest", "--rows", "0", "--no-search"], "--no-search"),
    (["bench", "biohash-mnist", "--max-rows", "0", "--maps", "3"], "--maps 3"),
])
def test_a_flag_of_another_suite_is_a_usage_error(argv, flag, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"hashplug bench {argv[1]}: error: unrecognized arguments: {flag}" in err, err


def test_shared_flag_names_say_what_they_mean_in_each_suite():
    """``--lengths``, ``--max-rows``, ``--seeds`` and ``--merge`` mean different things in different suites:
    each suite's help says which (``--k`` and ``--limit`` are their deprecated 0.1.0 names)."""
    helps = {name: _option_helps(name) for name in OLD_NAMES}
    assert all(text for h in helps.values() for text in h.values()), "every flag has help text"
    for flag in ("--lengths", "--max-rows", "--seeds", "--merge"):
        texts = {name: h[flag] for name, h in helps.items() if flag in h}
        assert len(texts) >= 2 and len(set(texts.values())) >= 2, (flag, texts)  # not one text pasted everywhere
    assert "one value" in helps["load"]["--k"]
    assert "each a column" in helps["biohash-mnist"]["--k"]
    assert "smoke run" in helps["encode"]["--max-rows"]
    assert "fitted on" in helps["ingest"]["--max-rows"]
    assert helps["encode"]["--limit"].startswith("deprecated 0.1.0 name of --max-rows")
    assert "seeds 0 .. N-1" in helps["biohash-mnist"]["--seeds"]
    assert "test query draws" in helps["mihash-unsupervised"]["--seeds"]
    assert "cells" in helps["search"]["--merge"]
    assert "seeds" in helps["biohash-cifar10"]["--merge"]


def test_an_unknown_suite_is_one_line_naming_the_registered_ones(toy_suite, capsys):
    assert main(["bench", "nosuch", "--times", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("hashplug bench: error: Unknown benchmark 'nosuch'.")
    assert all(name in err for name in (*OLD_NAMES, "toy-echo", "toy-echo-twice"))


def test_suite_names_live_in_the_registry_only():
    """No suite name is spelled in the CLI or the bench package's face: both read the registry."""
    sources = [ROOT / "hashplug" / "cli" / "train.py", ROOT / "hashplug" / "bench" / "__init__.py",
               ROOT / "hashplug" / "bench" / "suite.py"]
    for path in sources:
        text = path.read_text()
        named = [n for n in OLD_NAMES if f'"{n}"' in text or f"'{n}'" in text]
        assert not named, f"{path.name} spells suite names {named}"
        assert not re.search(r"[\"']hashplug\.bench\.\w+[\"']", text), f"{path.name} names a suite module by a string"


@pytest.fixture
def toy_suite(tmp_path, monkeypatch):
    """Import the toy suite's one file (as a plug-in author's module would be), into a copy of the registry."""
    from hashplug.bench import suite

    suite.load_suites()
    monkeypatch.setattr(suite, "_REGISTRY", dict(suite._REGISTRY))
    path = tmp_path / "toy_bench_suite.py"
    path.write_text(TOY)
    spec = importlib.util.spec_from_file_location("toy_bench_suite", path)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "toy_bench_suite", mod)
    spec.loader.exec_module(mod)
    return mod


def test_a_toy_suite_is_one_file(toy_suite, tmp_path, capsys):
    page = _help(["bench"], capsys)
    assert re.search(r"^\s+toy-echo\s+a toy suite", page, flags=re.M) and re.search(r"^\s+toy-echo-twice\s", page, flags=re.M)
    assert _flags(_help(["bench", "toy-echo"], capsys)) == {"--word", "--times", "--out"}
    out = tmp_path / "toy.json"
    assert main(["bench", "toy-echo-twice", "--word", "bit", "--times", "2", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == "bit bit bit bit"
    assert json.loads(out.read_text()) == {"suite": "toy-echo-twice", "rows": [{"word": "bit"}] * 4}
    # its flags are its own: not accepted by another suite, and another suite's are not accepted by it
    for argv in (["bench", "search", "--times", "2"], ["bench", "toy-echo", "--sizes", "5"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
    # the --out check every suite gets, before it runs
    assert main(["bench", "toy-echo", "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_a_suite_name_cannot_be_taken_twice(toy_suite):
    from hashplug.bench.suite import Suite, register_suite
    from hashplug.validation import HashplugError

    class Impostor(Suite):
        names = ("search",)

    with pytest.raises(HashplugError, match="'search' is taken by SearchSuite"):
        register_suite(Impostor)


def test_the_supervised_suite_takes_its_grids_and_presets_from_the_encoders(monkeypatch):
    """The gradient methods' own knob comes from each encoder's ``tuning_grid``, and every row starts from its
    encoder's preset for the dataset (not only BioHash's)."""
    from types import MappingProxyType

    from hashplug.bench import mihash as mb
    from hashplug.encoders import DPSH, MIHash, Preset

    assert mb.knob_grid("mihash") == [{"gamma": 1.0}, {"gamma": 3.0}] and MIHash.tuning_grid == {"gamma": [1.0, 3.0]}
    assert mb.knob_grid("dpsh") == [{"eta": 0.1}, {"eta": 1.0}] and DPSH.tuning_grid == {"eta": [0.1, 1.0]}
    assert mb.knob_grid("lsh") == [{}]
    monkeypatch.setattr(MIHash, "tuning_grid", {"gamma": [5.0], "bins": [8, 16]})
    assert mb.knob_grid("mihash") == [{"gamma": 5.0, "bins": 8}, {"gamma": 5.0, "bins": 16}]
    monkeypatch.setattr(MIHash, "presets", MappingProxyType({"mnist": Preset({"epochs": 7, "lr": 0.5}, source="a test")}))
    enc = mb._make("MIHash-linear", 8, 0, {"lr": 0.25}, "mnist", None)
    assert (enc.epochs, enc.lr, tuple(enc.hidden)) == (7, 0.25, ())  # preset, then the row's and the call's


def test_no_bench_function_is_over_80_lines():
    """The bench's runners stay readable: no function under hashplug/bench/ has more than 80 lines of code
    (its docstring not counted); 0.1.0's run_ag_news had 211, run_conv_table 217, run_ingest 190."""
    import ast

    long = []
    for path in sorted((ROOT / "hashplug" / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = node.body[0]
                doc = (first.end_lineno - first.lineno + 1 if isinstance(first, ast.Expr)
                       and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str) else 0)
                n = node.end_lineno - node.lineno + 1 - doc
                if n > 80:
                    long.append(f"{path.name}:{node.name} ({n} lines)")
    assert not long, long
