"""The README's results against the JSON files in ``benchmarks/results/``.

Every table in the README's results part (from "## Results (measured here)" to "## Command line") names
the JSON it quotes on a line directly above it::

    JSON: `benchmarks/results/biohash_table1_mnist.json`

(further backticked paths on that line give rows the table quotes from another table's JSON). For each
such table this test reads the file, maps every quoted cell to the JSON values it shows, and compares
them at the README's rounding. A figure edited by hand in the README, a renamed or deleted results file,
or a table without its ``JSON:`` line fails here. Every results file the README cites anywhere must exist,
either as a file under ``benchmarks/results/`` or as a run copied into a section's JSON (``"runs"``).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results"
RESULTS_START = "## Results (measured here)"
RESULTS_END = "## Command line"
JSON_LINE = re.compile(r"^JSON: `benchmarks/results/[^`]+`")
# a figure: digits with optional thousands commas and decimals, not part of a word ("p50", "1M", "k=2"
# are labels), optionally followed by "x" (a ratio) or "%"
NUMBER = re.compile(r"(?<![\w.=-])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\d]|[A-Za-wyz])")

Expected = list[float | None]  # None: the README quotes a figure the JSON does not hold (not checked)


@dataclass
class Table:
    """One markdown table of the README's results part."""

    line: int  # 1-based line of the header row
    section: str  # the ``###`` heading above it
    json_paths: list[str]  # from the ``JSON:`` line; the first is the table's own
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def row_dicts(self) -> list[dict[str, str]]:
        return [dict(zip(self.header, r, strict=False)) for r in self.rows]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_tables(text: str) -> list[Table]:
    """The tables between ``RESULTS_START`` and ``RESULTS_END``, each with the files its ``JSON:`` line names."""
    lines = text.splitlines()
    start = next(i for i, s in enumerate(lines) if s.startswith(RESULTS_START))
    end = next(i for i, s in enumerate(lines) if s.startswith(RESULTS_END))
    tables: list[Table] = []
    section = ""
    i = start
    while i < end:
        s = lines[i]
        if s.startswith("### "):
            section = s[4:].strip()
        is_header = (s.startswith("|") and i + 1 < end
                     and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1].strip()) is not None)
        if not is_header:
            i += 1
            continue
        j = i - 1
        while j > start and not lines[j].strip():
            j -= 1
        paths = re.findall(r"`(benchmarks/results/[^`]+)`", lines[j]) if JSON_LINE.match(lines[j]) else []
        table = Table(line=i + 1, section=section, json_paths=paths, header=_cells(s))
        i += 2
        while i < end and lines[i].startswith("|"):
            table.rows.append(_cells(lines[i]))
            i += 1
        tables.append(table)
    return tables


def numbers(cell: str) -> list[tuple[float, int]]:
    """The figures a cell quotes, each with its number of decimals (bold markers ignored)."""
    out = []
    for whole, frac in NUMBER.findall(cell.replace("**", "")):
        out.append((float(whole.replace(",", "") + (frac or "")), len(frac) - 1 if frac else 0))
    return out


def _load(path: str) -> Any:
    return json.loads((ROOT / path).read_text())


# ----------------------------------------------------------------------------------------------------
# How each results file's JSON maps to the README cells that quote it. Each function gets the loaded
# JSON of the table's files (in the JSON: line's order), the header and one row (header -> cell text) and
# returns, for each column it checks, the expected figures in the order the cell shows them.
# ----------------------------------------------------------------------------------------------------

KEY_COLUMNS = {"N"}  # columns that say which JSON cell a row is (the search tables), not a figure
Extractor = Callable[[list[Any], list[str], dict[str, str]], dict[str, Expected]]


def _label(row: dict[str, str], header: list[str]) -> str:
    return row[header[0]].replace("**", "").strip()


def _k(col: str) -> str:
    return re.search(r"\d+", col).group(0)  # type: ignore[union-attr]


def _ours_paper(run: dict[str, Any], key: str, k: str, paper: bool = True) -> Expected:
    if k not in run["rows"].get(key, {}):
        return []
    return [run["rows"][key][k]] + ([run["paper"][key][k]] if paper else [])


def ex_threads(data: list[Any], header: list[str], row: dict[str, str]) -> dict[str, Expected]:
    scenario = {"alone": "alone", "one other busy core": "load",
                "two training jobs at once (slower job)": "two_jobs"}[_label(row, header)]
    threads = {"2 threads": "2", "1 thread": "1", "auto": "auto"}
    cells = data[0]["rows"][scenario]
    return {c: [cells[t]["median"], cells[t]["median_vs_alone_2"]] for c, t in threads.items()}


def ex_biohash_table1(data: list[Any], header: list[str], row: dict[str, str]) -> dict[str, Expected]:
    method = _label(row, header)
    return {c: _ours_paper(data[0], method, _k(c)) for c in header[1:]}


def ex_biohash_table2(data: list[Any], header: list[str], row: dict[str, str]) -> dict[str, Expected]:
    runs = data[0]["runs"]
    label = _label(row, header)
    if label.startswith("BioHash, the preset"):
        return {c: _ours_paper(runs["cifar10_biohash_preset_merged.json"], "BioHash", _k(c)) for c in header[1:]}
    single = {"BioHash (activity 0.125 %": "cifar10_biohash_act00125_s0.json",
              "BioHash (activity 0.25 %": "cifar10_biohash_act0025_3seeds.json",
              "BioHash (activity 0.5 %": "cifar10_biohash_datainit.json"}
    for prefix, name in single.items():
        if label.startswith(prefix):
            return {c: _ours_paper(runs[name], "BioHash", _k(c), paper=False) for c in header[1:]}
    assert label != "BioHash", "Table 2's BioHash row in cifar10.json is the superseded step-1 run"
    return {c: _ours_paper(runs["cifar10.json"], label, _k(c)) for c in header[1:]}


def ex_bioconvhash_mnist(data: list[Any], header: list[str], row: dict[str, str]) -> dict[str, Expected]:
    runs = data[0]["runs"]
    label = _label(row, header)
    if header[0] == "method":  # the Table 1 row: mean ± std / paper (uncentred layer)
        main, unc = runs["bioconvhash_mnist_3seeds.json"], runs["bioconvhash_mnist_3seeds_uncentred.json"]
        out = {}
        for c in header[1:]:
            k = _k(c)
            if label == "paper - 2 (the target)":
                out[c] = [main["paper"]["BioConvHash"][k] - 2]
                continue
            cell = [main["rows"]["BioConvHash"][k], main["std"]["BioConvHash"][k], main["paper"]["BioConvHash"][k]]
            if unc["rows"]["BioConvHash"][k] != main["rows"]["BioConvHash"][k]:
                cell.append(unc["rows"]["BioConvHash"][k])
            out[c] = cell
        return out
    if header[0] == "k_CI":  # Table 4: k = 2 / 4 from the uncentred run; k = 8 / 16 centred (uncentred)
        unc = runs["bioconvhash_mnist_kci_shadows.json"]["kci_ablation"]
        cen = runs["bioconvhash_mnist_kci_centred_s0.json"]["kci_ablation"]
        out = {}
        for c in header[1:]:
            k = _k(c)
            if k in cen["rows"][label]:
                out[c] = [cen["rows"][label][k], cen["paper"][label][k], unc["rows"][label][k]]
            else:
                out[c] = [unc["rows"][label][k], unc["paper"][label][k]]
        return out
    method = {"BioConvHash (patch-normalised)": "BioConvHash",
              "BioConvHash without patch normalisation (its own filters)": "BioConvHash without patch normalisation",
              "BioConvHash without patch normalisation": "BioConvHash without patch normalisation",
              "BioHash": "BioHash"}[label]
    if header[1:] == ["clean", "shadowed"]:
        shadows = runs["bioconvhash_mnist_kci_shadows.json"]["shadows"]["rows"]
        return {c: [shadows[f"{method} k=16 {c}"]] for c in header[1:]}
    shadows = runs["bioconvhash_mnist_shadows3.json"]["shadows"]["rows"]
    name = {"clean": "clean", "0.75": "shadowed", "0.9": "shadowed 0.9", "0.97": "shadowed 0.97"}
    return {c: [shadows[f"{method} k=16 {name[c]}"]] for c in header[1:]}


def ex_bioconvhash_cifar10(data: list[Any], header: list[str], row: dict[str, str]) -> dict[str, Expected]:
    runs = data[0]["runs"]
    label = _label(row, header)
    kci10, kci = runs["bioconvhash_cifar10_kci10_s0.json"], runs["bioconvhash_cifar10_kci.json"]["kci_ablation"]
    if header[0] == "method":
        if label.startswith("BioHash (seed 0"):  # quoted from Table 2's JSON: activity 0.25 % / 0.125 %
            other = data[1]["runs"]
            return {c: [other["cifar10_biohash_act0025_3seeds.json"]["rows"]["BioHash"][_k(c)],
                        other["cifar10_biohash_act00125_s0.json"]["rows"]["BioHash"][_k(c)]] for c in header[1:]}
        run = kci10 if "k_CI = 10" in label else runs["bioconvhash_cifar10_s0.json"]
        return {c: _ours_paper(run, "BioConvHash", _k(c)) for c in header[1:]}
    out: dict[str, Expected] = {}
    for c in header[1:]:
        k = _k(c)
        if label in ("1 (the preset)", "5", "10"):
            key = label.split()[0]
            out[c] = [kci["rows"][key][k], kci["paper"][key][k]]
        elif label == "10 (the preset's run above)":
            out[c] = [kci10["rows"]["BioConvHash"][k], kci["paper"]["10"][k]]
        elif label == "25":
            out[c] = [kci10["kci_ablation"]["rows"]["25"][k], kci10["kci_ablation"]["paper"]["25"][k]]
        elif label == "100":  # the paper's k_CI = 100 row is not in the run's JSON
            out[c] = [runs["bioconvhash_cifar10_kci100_s0.json"]["rows"]["BioConvHash"][k], None]
        else:
            raise KeyError(label)
    return out


def ex_tune_kci(data: list[Any], header: list[str], row: dict[str, str]) -> dict[str, Expected]:
    by_kci = {str(r["filter"].get("kci", 1)): r for r in data[0]["rows"]}
    if _label(row, header) == "mean":
        return {c: [by_kci[c]["mean"]] for c in header[1:]}
    return {c: [by_kci[c]["val_map"]["4"], by_kci[c]["val_map"]["16"]] for c in header[1:]}


def _mihash(run: dict[str, Any], method: str, header: list[str]) -> dict[str, Expected]:
    out: dict[str, Expected] = {}
    for c in header[1:]:
        if c.startswith("fit s"):
            out[c] = [run["fit_seconds"][method]["48"]]
        else:
            out[c] = [run["rows"][method][_k(c)], run["std"][method][_k(c)]]
    return out


def ex_mihash_mnist(data: list[Any], header: list[str], row: dict[str, str]) -> dict[str, Expected]:
    runs = data[0]["runs"]
    label = _label(row, header)
    method = label.split(" (")[0]
    if "(fair protocol" in label:  # issue 30: per-seed validation splits, weight decay in every grid
        run = runs["mihash_mnist_fair.json"]
        if method in ("chance", "float"):  # the reference rows: no fit time
            return {c: ([] if c.startswith("fit s") else [run["rows"][method][_k(c)]]) for c in header[1:]}
        return _mihash(run, method, header)
    if "(weight decay in the grid, 5 seeds)" in label:
        return _mihash(runs["mihash_mnist_wd5.json"], method, header)
    if "(disjoint validation)" in label:
        return _mihash(runs["mihash_mnist_val3.json"], method, header)
    assert label == method, label
    return _mihash(runs["mihash_mnist.json"], method, header)


def ex_mihash_single(data: list[Any], header: list[str], row: dict[str, str]) -> dict[str, Expected]:
    return _mihash(data[0], _label(row, header), header)


def ex_angulardistill(data: list[Any], header: list[str], row: dict[str, str]) -> dict[str, Expected]:
    label = _label(row, header)
    if label.startswith("MIHash"):  # quoted from mihash_unsupervised.json, draw 0 only: no standard error
        rows = data[1]["rows"]["MIHash"]
        return {c: ([rows[_k(c)]["recall10_rescored"]] if _k(c) in rows else []) for c in header[1:]}
    rows = data[0]["rows"]["sign-384" if label == "sign of the floats" else label]
    return {c: ([rows[_k(c)]["recall10_rescored"], rows[_k(c)]["recall10_rescored_se"]] if _k(c) in rows else [])
            for c in header[1:]}


def ex_neurohash_ablation(data: list[Any], header: list[str], row: dict[str, str]) -> dict[str, Expected]:
    """Fair-protocol runs (``"std"`` in the JSON; also the CIFAR-10 table): rows ``<row key> (what it is)``,
    cells ``mean ± std`` over seeds, in %. The earlier protocol's file: one seed, baselines under ``"baselines"``."""
    label = _label(row, header)
    key = label.split(" (")[0]
    if "std" in data[0]:
        return {c: [100 * data[0]["rows"][key][_k(c)], 100 * data[0]["std"][key][_k(c)]] for c in header[1:]}
    if label.startswith("LSH on the raw"):
        rows = data[0]["baselines"]["LSH (features)"]
    elif label.startswith("ITQ on the raw"):
        rows = data[0]["baselines"]["ITQ (features)"]
    else:
        rows = data[0]["rows"][key]
    return {c: [100 * rows[_k(c)]] for c in header[1:]}


def ex_neurohash_spatial(data: list[Any], header: list[str], row: dict[str, str]) -> dict[str, Expected]:
    """Fair-protocol runs (``"std"`` in the JSON): rows ``<row key> (what it is)``; either columns ``plain
    mAP@1000`` / ``r = 0.1`` ... with ``a / b / c`` over 16 / 32 / 64 bits, or columns ``16 bits`` ... with
    ``eta=1 -> eta=10`` shares (the conditional table). The earlier protocol's file: rows are values of w."""
    bits = ("16", "32", "64")
    if "std" not in data[0]:
        w = "w=" + _label(row, header)
        if header[1].startswith("r = "):
            out: dict[str, Expected] = {}
            for c in header[1:]:
                if c.startswith("plain"):
                    out[c] = [100 * data[0]["map_at_k"][w][b] for b in bits]
                else:
                    r = "r=" + re.search(r"r = ([\d.]+)", c).group(1)  # type: ignore[union-attr]
                    out[c] = [100 * data[0]["rows"][w][r][b] for b in bits]
            return out
        cond = data[0]["conditional"]["rows"][w]
        return {c: [100 * cond[_k(c)]["eta=1"], 100 * cond[_k(c)]["eta=10"]] for c in header[1:]}
    key = _label(row, header).split(" (")[0]
    if header[1].endswith("bits"):
        cond = data[0]["conditional"]["rows"]
        return {c: [100 * cond["eta=1"][key][_k(c)], 100 * cond["eta=10"][key][_k(c)]] for c in header[1:]}
    out = {}
    for c in header[1:]:
        if c.startswith("plain"):
            out[c] = [100 * data[0]["map_at_k"][key][b] for b in bits]
        else:
            r = "r=" + re.search(r"r = ([\d.]+)", c).group(1)  # type: ignore[union-attr]
            out[c] = [100 * data[0]["rows"][r][key][b] for b in bits]
    return out


def ex_load(data: list[Any], header: list[str], row: dict[str, str]) -> dict[str, Expected]:
    run = data[0]["runs"][{"1M": "load_1m.json", "10M": "load_10m.json"}[_label(row, header)]]
    phase = {p["phase"].split(" (")[0]: p for p in run["rows"]}
    ingest, during = phase["ingest"], phase["search during ingest"]
    return {
        "ingest rows/s": [ingest["rows_per_s"]],
        "peak RSS of the writer (before ingest)": [ingest["peak_rss_mb"], ingest["rss_before_mb"]],
        "searches during": [during["searches"], during["errors"]],
        "p50 / p99 / max ms": [during["p50_ms"], during["p99_ms"], during["max_ms"]],
        "first search after (flat)": [phase["first search after ingest"]["ms"]],
        "`build_hamming_index`": [phase["build_index"]["seconds"]],
        "probe rows found at distance 0": [phase["20 probe searches through the index"][k]
                                           for k in ("found_at_distance_0", "probes", "p50_ms")],
    }


def ex_search(data: list[Any], header: list[str], row: dict[str, str]) -> dict[str, Expected]:
    if header[0] == "codes":
        codes, n = row["codes"], row["N"].replace(",", "")
        cell, mem = data[0]["rows"][codes][n], data[0]["memory"][codes][n]
        ours = cell["hashplug-index"]
        lance = cell.get("lancedb-flat") or cell["lancedb-label-list"]
        return {
            "N": [float(n)],  # the key of the row
            "hashplug index": [ours["ms_per_query"]],
            "FAISS flat": [cell["faiss-flat"]["ms_per_query"]],
            "hashplug / FAISS": [ours["ratio_to_faiss"]],
            "LanceDB": [lance["ms_per_query"]],
            "LanceDB / hashplug": [lance["ms_per_query"] / ours["ms_per_query"]],
            "batched q/s hashplug / FAISS": [ours["qps_batched"], cell["faiss-flat"]["qps_batched"]],
            "index bytes per row (raw)": [mem["index_bytes_per_row"], mem["raw_code_bytes_per_row"]],
        }
    codes, n = header[0], row["N"].replace(",", "")
    cell, mem = data[0]["rows"][codes][n], data[0]["memory"][codes][n]
    return {
        "N": [float(n)],  # the key of the row
        "MIH top-100": [cell["hashplug-mih"]["ms_per_query"]],
        "MIH top-10": [cell["hashplug-mih@10"]["ms_per_query"]],
        "flat top-10 (hashplug)": [cell["hashplug-index@10"]["ms_per_query"]],
        "FAISS top-10": [cell["faiss-flat@10"]["ms_per_query"]],
        "FAISS / MIH (top-10)": [cell["faiss-flat@10"]["ms_per_query"] / cell["hashplug-mih@10"]["ms_per_query"]],
        "MIH bytes per row": [mem["mih_bytes_per_row"]],
    }


EXTRACTORS: dict[str, Extractor] = {
    "threads_under_load.json": ex_threads,
    "biohash_table1_mnist.json": ex_biohash_table1,
    "biohash_table2_cifar10.json": ex_biohash_table2,
    "bioconvhash_table1_mnist.json": ex_bioconvhash_mnist,
    "bioconvhash_table2_cifar10.json": ex_bioconvhash_cifar10,
    "tune_bioconvhash_cifar10_kci.json": ex_tune_kci,
    "tune_bioconvhash_cifar10_kci_fair.json": ex_tune_kci,
    "mihash_table_mnist.json": ex_mihash_mnist,
    "mihash_ag_news.json": ex_mihash_single,
    "mihash_ag_news_val3.json": ex_mihash_single,
    "angulardistill_unsupervised_3seeds.json": ex_angulardistill,
    "neurohash_ablation.json": ex_neurohash_ablation,
    "neurohash_spatial.json": ex_neurohash_spatial,
    "neurohash_spatial_fair.json": ex_neurohash_spatial,
    "neurohash_cifar10.json": ex_neurohash_ablation,
    "neurohash_ablation_fair.json": ex_neurohash_ablation,
    "load.json": ex_load,
    "search_merged.json": ex_search,
}

# Cells where the README and its JSON disagree and the JSON is not clearly the run the README describes,
# left for a decision: (file, row label, column) -> (the README's figures, the JSON's). The test pins both
# sides, so neither can change unnoticed.
KNOWN_DISCREPANCIES: dict[tuple[str, str, str], tuple[list[float], list[float]]] = {}


def mismatches(table: Table, data: list[Any]) -> list[str]:
    """Every cell of ``table`` whose figures differ from its JSON's at the README's rounding."""
    name = Path(table.json_paths[0]).name
    extract = EXTRACTORS[name]
    bad = []
    for row in table.row_dicts():
        label = _label(row, table.header)
        expected = extract(data, table.header, row)
        for col in table.header[1:]:
            quoted = numbers(row.get(col, ""))
            if not quoted:  # "-" or empty: the README quotes nothing here
                continue
            if col not in expected:
                bad.append(f"{name} [{label}] [{col}]: README {row[col]!r} is not mapped to the JSON")
                continue
            want = expected[col]
            known = KNOWN_DISCREPANCIES.get((name, label, col))
            if known is not None:
                if [v for v, _ in quoted] != known[0] or want != known[1]:
                    bad.append(f"{name} [{label}] [{col}]: known discrepancy changed: README {row[col]!r}, "
                               f"JSON {want}, recorded {known}")
                continue
            if len(quoted) != len(want):
                bad.append(f"{name} [{label}] [{col}]: README {row[col]!r} has {len(quoted)} figures, "
                           f"the JSON gives {len(want)}: {want}")
                continue
            for (value, decimals), w in zip(quoted, want, strict=True):
                if w is None:
                    continue
                if abs(w - value) > 0.5 * 10.0 ** -decimals + 1e-9:
                    bad.append(f"{name} [{label}] [{col}]: README {row[col]!r}, JSON {w!r}")
    return bad


TABLES = parse_tables(README.read_text())


def _table_id(table: Table) -> str:
    return f"L{table.line}-{Path(table.json_paths[0]).stem if table.json_paths else 'no-json'}"


def _available_names() -> set[str]:
    """Results file names that exist: files under benchmarks/results/ and runs copied into a JSON's ``runs``."""
    names = {p.name for p in RESULTS.rglob("*") if p.is_file()}
    for p in RESULTS.glob("*.json"):
        data = json.loads(p.read_text())
        runs = data.get("runs") if isinstance(data, dict) else None
        if isinstance(runs, dict):
            names.update(runs)
    return names


def test_the_readme_has_results_tables() -> None:
    assert len(TABLES) >= 20, [t.header for t in TABLES]


@pytest.mark.parametrize("table", TABLES, ids=_table_id)
def test_every_results_table_names_its_json(table: Table) -> None:
    assert table.json_paths, (f"README line {table.line} ({table.section}): the table needs a line "
                              "'JSON: `benchmarks/results/<file>.json`' directly above it")
    for path in table.json_paths:
        assert (ROOT / path).is_file(), f"README line {table.line}: {path} does not exist"
        assert "/archive/" not in path, f"README line {table.line}: a table must not quote an archived run"
    assert Path(table.json_paths[0]).name in EXTRACTORS, (
        f"README line {table.line}: no mapping of {table.json_paths[0]} to its cells in {__file__}")
    command = _load(table.json_paths[0]).get("command")
    assert command, f"{table.json_paths[0]}: the command that produced it is not recorded ('command')"


@pytest.mark.parametrize("table", TABLES, ids=_table_id)
def test_readme_figures_equal_the_json(table: Table) -> None:
    data = [_load(p) for p in table.json_paths]
    assert mismatches(table, data) == []


@pytest.mark.parametrize("table", TABLES, ids=_table_id)
def test_a_figure_changed_by_hand_is_caught(table: Table) -> None:
    """The comparison is not vacuous: one figure moved in its last digit fails, in every table."""
    data = [_load(p) for p in table.json_paths]
    name = Path(table.json_paths[0]).name
    for r, row in enumerate(table.row_dicts()):
        expected = EXTRACTORS[name](data, table.header, row)
        for col in table.header[1:]:
            want = expected.get(col) or []
            skip = col in KEY_COLUMNS or (name, _label(row, table.header), col) in KNOWN_DISCREPANCIES
            if skip or not want or want[0] is None:
                continue
            match = NUMBER.search(row[col].replace("**", ""))
            if match is None:
                continue
            text = row[col].replace("**", "")
            last = match.end() - 1
            bumped = text[:last] + str((int(text[last]) + 3) % 10) + text[match.end():]
            changed = Table(table.line, table.section, table.json_paths, table.header,
                            [list(x) for x in table.rows])
            changed.rows[r][table.header.index(col)] = bumped
            assert mismatches(changed, data), f"{row[col]!r} -> {bumped!r} was not caught"
            return
    pytest.fail(f"README line {table.line}: no checked figure in this table")


def _cited(text: str) -> list[str]:
    """Results files the README cites: backticked names and benchmarks/results/ paths (commands' outputs only
    when written under benchmarks/results/, since a command's bare --out name is where that run wrote)."""
    cited = []
    text = re.sub(r"^[ \t]*```.*?^[ \t]*```", "", text, flags=re.S | re.M)  # code blocks: example commands, not citations
    for span in re.findall(r"`([^`]+)`", text):
        is_command = span.startswith(("hashplug ", "python ", "benchmarks/", "--", "..."))
        for token in re.findall(r"[\w./*-]+\.(?:json|png|log)\b", span):
            # the README's two ways of naming three seeds' files: "_s0/1/2.json" and "_sS.json" (S = 0, 1, 2)
            tokens = ([token.replace("s0/1/2", f"s{i}").replace("_sS.", f"_s{i}.") for i in range(3)]
                      if "s0/1/2" in token or "_sS." in token else [token])
            for t in tokens:
                if t.startswith(("results/", "benchmarks/results/")):
                    cited.append(t.split("results/", 1)[1])
                elif not is_command and "/" not in t:
                    cited.append(t)
    return cited


def test_every_results_file_the_readme_cites_exists() -> None:
    names = _available_names()
    missing = []
    for token in _cited(README.read_text()):
        token = token.removeprefix("archive/")
        if "*" in token:
            ok = any(fnmatch.fnmatch(n, token) for n in names)
        elif token.startswith(("_", "...")):  # shorthand for the file named just before: a suffix of a name
            ok = any(n.endswith(token.lstrip(".")) for n in names)
        else:
            ok = token in names
        if not ok:
            missing.append(token)
    assert missing == [], f"README cites results files that do not exist: {sorted(set(missing))}"


def test_parser_reads_figures_as_the_readme_writes_them() -> None:
    assert numbers("**44.29** / 44.38") == [(44.29, 2), (44.38, 2)]
    assert numbers("299,038") == [(299038.0, 0)]
    assert numbers("> 180, killed (> 58)") == [(180.0, 0), (58.0, 0)]
    assert numbers("20 / 20 (p50 46 ms through the index)") == [(20.0, 0), (20.0, 0), (46.0, 0)]
    assert numbers("121x") == [(121.0, 0)]
    assert numbers("khot-320-16") == [] and numbers("1M") == [] and numbers("-") == []
