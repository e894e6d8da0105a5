"""The table machinery every paper-table suite shares: the protocol split (with smoke-run subsets), settings per
hash length, code digests, merging the JSONs of runs on different seeds, and the text table beside the paper.

A table result (:func:`hashplug.bench.biohash_tables.run_table`, the BioConvHash table) is a dict with
``"table"``, ``"metric"``, ``"protocol"``, ``"seeds"``, ``"hyperparameters"`` and, per method and hash length
(as a string), ``"per_seed"`` values, their mean ``"rows"`` and ``"std"``, the ``"paper"`` numbers where known
and optional timings, convergence and code digests. Nothing here knows a method or a dataset by name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..validation import HashplugError

__all__ = ["load_protocol", "load_data", "split_data", "load_splits", "test_queries", "fair_validation_split",
           "table_references", "reference_summary", "merge_tables", "format_table", "REFERENCE_ROWS"]

#: The reference rows of every table (issue 30): the chance floor and the float-feature ceiling.
REFERENCE_ROWS: tuple[str, ...] = ("chance", "float")


def _subset_per_class(y: np.ndarray, cap: int) -> int:
    """Queries per class a smoke-run subset with labels ``y`` allows: a fifth of its smallest class, in [2, cap]."""
    return max(2, min(int(cap), int(np.bincount(np.asarray(y)).min()) // 5))


def load_data(dataset: str, data: str | Path | None, limit: int | None = None,
              flat: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    """``dataset``'s samples and labels (a stratified subset of ``limit`` rows for smoke runs) and the protocol
    name the splits of :func:`split_data` get."""
    from ..data import get_dataset

    X, y = get_dataset(dataset).load(data, flat=flat)  # the vector table's encoders take (n, n_features) vectors
    if limit is not None and limit < len(y):
        rng = np.random.default_rng(12345)
        keep = np.sort(rng.choice(len(y), size=int(limit), replace=False))
        return X[keep], y[keep], f"{dataset}-limit{limit}"
    return X, y, dataset


def split_data(dataset: str, X: np.ndarray, y: np.ndarray, seed: int, name: str):
    """The protocol split of ``(X, y)`` from :func:`load_data` with ``seed`` (a smoke subset: as many queries
    per class as it allows)."""
    from ..data import get_dataset, per_class_split, protocol_split
    from ..data.protocols import Split

    if name != dataset:
        q, db = per_class_split(y, _subset_per_class(y, get_dataset(dataset).protocol.per_class), seed)
        return Split(X[q], y[q], X[db], y[db], q, db, seed, name)
    return protocol_split(dataset, X, y, seed)


def load_protocol(dataset: str, data: str | Path | None, seed: int, limit: int | None = None, flat: bool = True):
    """Load ``dataset`` (flat vectors, or images in their natural shape with ``flat=False``) and split it by
    its protocol (from the data registry) with ``seed``.

    ``limit`` keeps a stratified subset of that many rows before splitting (for smoke tests).
    """
    X, y, name = load_data(dataset, data, limit, flat)
    return split_data(dataset, X, y, seed, name)


def test_queries(dataset: str, y: np.ndarray, seeds: Sequence[int], name: str) -> dict[int, np.ndarray]:
    """The test query rows of every seed in ``seeds`` (the ``q_idx`` of :func:`split_data`, without copying
    samples)."""
    empty = np.zeros((len(y), 0), dtype=np.uint8)
    return {int(s): split_data(dataset, empty, y, int(s), name).q_idx for s in seeds}


def load_splits(dataset: str, data: str | Path | None, seeds: Sequence[int], limit: int | None = None,
                flat: bool = True) -> dict[int, Any]:
    """The protocol split of every seed in ``seeds`` (``{seed: Split}``), the dataset loaded once; each equal to
    :func:`load_protocol` with that seed."""
    X, y, name = load_data(dataset, data, limit, flat)
    return {int(s): split_data(dataset, X, y, int(s), name) for s in seeds}


def fair_validation_split(split: Any, queries: dict[int, np.ndarray], per_class: int, n_db: int | None = None,
                          draw_seed: int | None = None) -> tuple[Any, dict[str, Any]]:
    """A seed's validation split, cut from its training side (its database) minus every reported seed's test
    queries (:func:`hashplug.bench.protocol.validation_rows`), with its JSON record.

    Parameters
    ----------
    split : Split
        The seed's protocol split (``split.seed`` is the seed).
    queries : dict of int to ndarray of int
        The test query rows of every seed the table reports (:func:`test_queries`), indexing the same rows
        as ``split.q_idx`` / ``split.db_idx``.
    per_class : int
        Validation queries per class.
    n_db : int or None
        Validation database rows (None: all the rest of the pool).
    draw_seed : int or None
        Seed of the draw (default ``split.seed + 1000``, as the earlier ``validation_split`` of ``tune``).

    Returns
    -------
    val : Split
        Validation queries and database (``q_idx`` / ``db_idx`` index the pooled rows, ``name`` ends ``-val``).
    record : dict
        :func:`hashplug.bench.protocol.validation_record`: rows digest, sizes, and the measured overlap with
        every reported seed's test queries (zero, else an error) and with the seed's own test database, which
        in these protocols is its training side (allowed and recorded).
    """
    from ..data.protocols import Split
    from .protocol import validation_record, validation_rows

    seed = int(split.seed)
    if seed not in queries:
        raise HashplugError(f"seed {seed} is not among the reported seeds {sorted(queries)}; pass its test queries.")
    n = int(max(split.db_idx.max(initial=-1), split.q_idx.max(initial=-1))) + 1
    y_all = np.full(n, -1, dtype=np.int64)
    y_all[split.q_idx], y_all[split.db_idx] = split.yq, split.ydb
    pool = split.db_idx
    for q in queries.values():
        pool = np.setdiff1d(pool, q)
    n_q = int(per_class) * int(np.unique(split.ydb).size)
    n_db = pool.size - n_q if n_db is None else min(int(n_db), pool.size - n_q)
    vq, vdb = validation_rows(split.db_idx, n_q, n_db, seed=seed + 1000 if draw_seed is None else int(draw_seed),
                              exclude=list(queries.values()), labels=y_all)
    order = np.argsort(split.db_idx, kind="stable")
    pq = order[np.searchsorted(split.db_idx[order], vq)]
    pdb = order[np.searchsorted(split.db_idx[order], vdb)]
    val = Split(Xq=split.Xdb[pq], yq=split.ydb[pq], Xdb=split.Xdb[pdb], ydb=split.ydb[pdb], q_idx=vq, db_idx=vdb,
                seed=seed, name=f"{split.name}-val")
    test: dict[str, dict[str, Any]] = {str(s): {"queries": q} for s, q in queries.items()}
    test[str(seed)]["database"] = split.db_idx
    record = validation_record({"queries": vq, "database": vdb}, test, allowed=[f"seed {seed} database"])
    return val, record


def table_references(split: Any, R: int | None, flat: Any = None) -> dict[str, float]:
    """The chance floor and the float ceiling (percent) of one seed's split: ``{"chance": ..., "float": ...}``.

    ``flat`` maps the split's samples to the float vectors the ceiling ranks by cosine (default: rows
    flattened, as the vector encoders see them; cosine does not depend on the pixels' scale).
    """
    from .protocol import chance_map, cosine_map

    f = flat or (lambda X: np.asarray(X, np.float32).reshape(len(X), -1))
    return {"chance": 100 * chance_map(split.yq, split.ydb, R),
            "float": 100 * cosine_map(f(split.Xq), f(split.Xdb), split.yq, split.ydb, R)}


def reference_summary(per_seed: dict[str, list[float]], ks: Sequence[Any]) -> dict[str, Any]:
    """``"rows"`` (mean per column), ``"std"`` and ``"per_seed"`` entries of the reference rows from their
    per-seed values ``{"chance": [...], "float": [...]}``; the same value at every column ``ks``."""
    rows = {r: {str(k): round(float(np.mean(v)), 2) for k in ks} for r, v in per_seed.items() if v}
    std = {r: {str(k): round(float(np.std(v)), 2) for k in ks} for r, v in per_seed.items() if v}
    return {"rows": rows, "std": std, "per_seed": {r: {str(k): [round(float(x), 2) for x in v] for k in ks}
                                                   for r, v in per_seed.items() if v}}


def _at_k(settings: dict[str, Any], k: int | str) -> dict[str, Any]:
    """A method's settings at hash length ``k``: its ``by_k[str(k)]`` overrides applied, ``by_k`` dropped."""
    params = {name: v for name, v in settings.items() if name != "by_k"}
    params.update(settings.get("by_k", {}).get(str(int(k)), {}))
    return params


def _codes_digest(cq: np.ndarray, cdb: np.ndarray) -> str:
    """sha256 of the packed query and database codes: equal digests mean bit-identical codes."""
    import hashlib

    h = hashlib.sha256()
    for c in (cq, cdb):
        c = np.ascontiguousarray(c, dtype=np.uint8)
        h.update(str(c.shape).encode())
        h.update(c.tobytes())
    return h.hexdigest()


def _cell_setting(hp_method: dict[str, Any], k: str) -> Any:
    """:func:`_at_k` in JSON form (tuples as lists), so settings read from files and presets compare equal."""
    return json.loads(json.dumps(_at_k(hp_method, k), sort_keys=True))


def merge_tables(
    paths: Sequence[str | Path],
    allow_partial: bool = True,
    docs: Sequence[dict[str, Any]] | None = None,
    target: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Combine the JSONs of table runs on different seeds into the JSON of one run over all seeds.

    Long tables run some seeds per session (``--seed-list``). Means, standard deviations and per-seed values
    are recomputed from the per-seed values; timings and the lower-index-first rows are averaged over seeds
    (weighted by each run's seed count); convergence is the worst seed's; code digests are pooled.

    Parameters
    ----------
    paths : sequence of path
        Result JSONs of :func:`run_table` (or the BioConvHash table), each on its own seeds.
    allow_partial : bool
        Accept a run marked ``"partial"`` (interrupted after some seeds: its JSON holds exactly the seeds it
        finished). The BioConvHash table refuses them: its partial runs may stop inside an ablation.
    docs : sequence of dict or None
        The runs' JSONs already read from ``paths`` (None: read them here).
    target : dict or None
        None: every run must have the same hyperparameters, and all their cells are merged. Else the setting
        to merge, ``{method: {param: value, "by_k": {...}}}`` (as :func:`default_hp`): cell by cell
        (method, k), the runs' cells whose effective parameters (with ``by_k`` applied) equal the target's
        are merged and the others are left out (listed in ``"left_out"``), so a preset that changed at
        one k keeps the runs of the other k. The settings outside the methods (epochs override, input
        scaling) must still agree. ``"seeds_by_cell"`` tells which seeds each cell holds.
    """
    docs = [json.loads(Path(p).read_text()) for p in paths] if docs is None else list(docs)
    if not docs:
        raise HashplugError("merge needs at least one result JSON.")
    _check_mergeable(paths, docs, allow_partial, target)
    cells, left_out = _cells_to_merge(paths, docs, target)
    return _merged(paths, docs, target, cells, left_out)


def _shared_setting(d: dict[str, Any], target: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """The hyperparameters a run must share with the others: all of them, or those outside the methods."""
    hp = d.get("hyperparameters", {})
    return hp if target is None else {k: v for k, v in hp.items() if k not in d["per_seed"] and k not in target}


def _check_mergeable(paths: Sequence[str | Path], docs: Sequence[dict[str, Any]], allow_partial: bool,
                     target: dict[str, dict[str, Any]] | None) -> None:
    """Refuse runs of different tables, metrics, protocols or shared settings (and partial runs if asked)."""
    first = docs[0]
    for p, d in zip(paths, docs):
        if d.get("partial") and not allow_partial:
            raise HashplugError(f"{p} is a partial run ({d['partial']}); finish it before merging.")
        for key in ("table", "metric", "protocol"):
            if d.get(key) != first.get(key):
                raise HashplugError(f"{p} differs from {paths[0]} in {key!r}; only runs of one setting can be merged.")
        if _shared_setting(d, target) != _shared_setting(first, target):
            raise HashplugError(f"{p} differs from {paths[0]} in 'hyperparameters'; only runs of one setting "
                                "can be merged.")
        if target is None and set(d["per_seed"]) != set(first["per_seed"]):
            raise HashplugError(f"{p} has methods {sorted(d['per_seed'])}, {paths[0]} has {sorted(first['per_seed'])}.")


def _cells_to_merge(paths: Sequence[str | Path], docs: Sequence[dict[str, Any]],
                    target: dict[str, dict[str, Any]] | None
                    ) -> tuple[dict[tuple[str, str], list[tuple[int, list[int]]]], list[dict[str, Any]]]:
    """``cells[(method, k)] = [(doc index, seeds of the cell in that doc)]`` of the cells merged, and the
    cells left out (their setting differs from ``target``)."""
    cells: dict[tuple[str, str], list[tuple[int, list[int]]]] = {}
    left_out: list[dict[str, Any]] = []
    for i, (p, d) in enumerate(zip(paths, docs)):
        used = False
        for m, byk in d["per_seed"].items():
            for k, vals in byk.items():
                seeds_here = d.get("seeds_by_cell", {}).get(m, {}).get(k, d["seeds"])
                if len(seeds_here) != len(vals):
                    raise HashplugError(f"{p}: {m} k={k} has {len(vals)} values for seeds {seeds_here}.")
                if target is not None:
                    have = _cell_setting(d["hyperparameters"].get(m, {}), k)
                    want = _cell_setting(target[m], k) if m in target else None
                    if have != want:
                        diff = sorted(n for n in set(have) | set(want or {}) if have.get(n) != (want or {}).get(n))
                        left_out.append({"path": str(p), "method": m, "k": int(k), "seeds": list(seeds_here),
                                         "differs_in": diff})
                        continue
                taken = [s for _, ss in cells.get((m, k), []) for s in ss]
                if set(taken) & set(seeds_here):
                    raise HashplugError(f"the runs share seeds {sorted(set(taken) & set(seeds_here))} "
                                        f"({m} k={k}, {p}).")
                cells.setdefault((m, k), []).append((i, list(seeds_here)))
                used = True
        if not used:
            raise HashplugError(f"{p} has no cell at the setting merged (its hyperparameters differ at every "
                                "method and k); only runs of one setting can be merged.")
    return cells, left_out


def _merged(paths: Sequence[str | Path], docs: Sequence[dict[str, Any]], target: dict[str, dict[str, Any]] | None,
            cells: dict[tuple[str, str], list[tuple[int, list[int]]]], left_out: list[dict[str, Any]]) -> dict[str, Any]:
    """The merged JSON: per-seed values pooled, means and spreads recomputed, timings weighted by seeds."""
    first = docs[0]
    methods = list(dict.fromkeys(m for m, _ in cells))
    by_method: dict[str, list[str]] = {m: [] for m in methods}
    for m, k in cells:
        by_method[m].append(k)
    for m in by_method:
        by_method[m].sort(key=int)

    def pool(get: Any) -> dict[str, dict[str, list[Any]]]:
        return {m: {k: [x for i, _ in cells[(m, k)] for x in get(docs[i], m, k)] for k in ks}
                for m, ks in by_method.items()}

    def wmean(key: str) -> dict[str, dict[str, float]]:
        out_k: dict[str, dict[str, float]] = {}
        for m, ks in by_method.items():
            for k in ks:
                parts = [(docs[i][key][m][k], len(ss)) for i, ss in cells[(m, k)] if k in docs[i].get(key, {}).get(m, {})]
                if parts:
                    out_k.setdefault(m, {})[k] = round(sum(v * n for v, n in parts) / sum(n for _, n in parts), 2)
        return out_k

    out = {k: v for k, v in first.items() if k != "partial"}
    out["seeds"] = list(dict.fromkeys(s for c in cells.values() for _, ss in c for s in ss))
    if target is not None:
        out["hyperparameters"] = {**_shared_setting(first, target), **{m: target[m] for m in methods}}
    per = pool(lambda d, m, k: d["per_seed"][m][k])
    out["per_seed"] = {m: {k: [round(x, 2) for x in v] for k, v in byk.items()} for m, byk in per.items()}
    out["rows"] = {m: {k: round(float(np.mean(v)), 2) for k, v in byk.items()} for m, byk in per.items()}
    out["std"] = {m: {k: round(float(np.std(v)), 2) for k, v in byk.items()} for m, byk in per.items()}
    out["seeds_by_cell"] = {m: {k: [s for _, ss in cells[(m, k)] for s in ss] for k in ks}
                            for m, ks in by_method.items()}
    if "rows_tie_aware" in first:
        out["rows_tie_aware"] = out["rows"]
    for key in ("paper", "m"):  # per cell, from the first run that holds it
        if key in first:
            src = {(m, k): docs[cells[(m, k)][0][0]].get(key, {}).get(m, {}) for m, k in cells}
            out[key] = {m: {k: src[(m, k)][k] for k in ks if k in src[(m, k)]} for m, ks in by_method.items()}
    for key in ("rows_first_index", "train_seconds", "seconds_per_epoch"):
        if key in first:
            out[key] = wmean(key)
    if "codes_sha256" in first:
        out["codes_sha256"] = pool(lambda d, m, k: d["codes_sha256"][m][k])
    if any("convergence" in d for d in docs):
        out["convergence"] = _merged_convergence(docs, cells, by_method)
    _merge_references(out, docs)
    _merge_validation(out, docs)
    out["total_seconds"] = round(sum(d.get("total_seconds", 0.0) for d in docs), 1)
    out["merged_from"] = [str(p) for p in paths]
    if left_out:
        out["left_out"] = left_out
    return out


def _merge_references(out: dict[str, Any], docs: Sequence[dict[str, Any]]) -> None:
    """The reference rows (chance, float) of the merged runs: each seed's values once (they depend on the
    seed's split only, not on any setting), means and spreads recomputed at every column of the table."""
    vals: dict[str, dict[int, float]] = {}
    for d in docs:
        for r, v in d.get("references_per_seed", {}).items():
            for s, x in zip(d["references_seeds"], v):
                vals.setdefault(r, {}).setdefault(int(s), float(x))
    if not vals:
        return
    seeds = sorted(set.intersection(*(set(v) for v in vals.values())))
    ks = sorted({k for r in out["rows"].values() for k in r}, key=int)
    per = {r: [v[s] for s in seeds] for r, v in vals.items()}
    summ = reference_summary(per, ks)
    out["rows"].update(summ["rows"])
    out["std"].update(summ["std"])
    out["references_per_seed"] = {r: [round(x, 2) for x in v] for r, v in per.items()}
    out["references_seeds"] = seeds


def _merge_validation(out: dict[str, Any], docs: Sequence[dict[str, Any]]) -> None:
    """The runs' validation records pooled; a run whose splits were not checked against the test queries of
    every merged seed is refused (its table reported fewer seeds: rerun it with ``--seeds`` covering them)."""
    recs = {s: r for d in docs for s, r in d.get("validation", {}).get("per_seed", {}).items()}
    if not recs:
        return
    for d in docs:
        for s, r in d.get("validation", {}).get("per_seed", {}).items():
            missing = sorted(t for t in out["seeds"] if f"seed {t} queries" not in r.get("overlap", {}))
            if missing:
                raise HashplugError(f"the validation split of seed {s} was not checked against the test queries of "
                                    f"seeds {missing}; run it with --seeds covering every seed of the merged table.")
    out["validation"] = {**docs[0]["validation"], "per_seed": recs}


def _merged_convergence(docs: Sequence[dict[str, Any]], cells: dict[tuple[str, str], list[tuple[int, list[int]]]],
                        by_method: dict[str, list[str]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per cell, the worst seed's convergence: the largest deviation, the seed-weighted median, the fewest units."""
    conv: dict[str, dict[str, dict[str, float]]] = {}
    for m, ks in by_method.items():
        for k in ks:
            cs = [(docs[i]["convergence"][m][k], len(ss)) for i, ss in cells[(m, k)]
                  if k in docs[i].get("convergence", {}).get(m, {})]
            if not cs:
                continue
            merged = {"row_norm_dev_max": max(c["row_norm_dev_max"] for c, _ in cs)}
            if all("row_norm_dev_median" in c for c, _ in cs):
                merged["row_norm_dev_median"] = round(
                    sum(c["row_norm_dev_median"] * n for c, n in cs) / sum(n for _, n in cs), 4)
            if all("units_ever_won" in c for c, _ in cs):
                merged["units_ever_won"] = min(c["units_ever_won"] for c, _ in cs)
            conv.setdefault(m, {})[k] = merged
    return conv


def format_table(result: dict[str, Any]) -> str:
    """Ours beside the paper's numbers, one line per method."""
    ks = sorted({int(k) for r in result["rows"].values() for k in r})
    head = f"{result['table']} — {result['metric']} (%), ours / paper, seeds {result['seeds']}"
    lines = [head, f"{'method':<14}" + "".join(f"{'k=' + str(k):>16}" for k in ks)]
    for m, row in result["rows"].items():
        cells = []
        for k in ks:
            ours = row.get(str(k))
            paper = result["paper"].get(m, {}).get(str(k))
            cells.append(
                f"{'-' if ours is None else f'{ours:.2f}':>7} / {'-' if paper is None else f'{paper:.2f}':<6}"
            )
        lines.append(f"{m:<14}" + "".join(f"{c:>16}" for c in cells))
    lines.insert(1, f"(ours: {result.get('rows_metric', 'mAP')})")
    if result.get("rows_first_index"):
        lines.append("ours with ties to the lower database index:")
        for m, fi in result["rows_first_index"].items():
            lines.append(f"{m:<14}" + "".join(f"{'-' if fi.get(str(k)) is None else f'{fi[str(k)]:.2f}':>16}"
                                              for k in ks))
    for m, conv in result.get("convergence", {}).items():
        lines.append(f"{m} convergence (max / median |p-norm - 1|, units ever won): " + ", ".join(
            f"k={k}: {c.get('row_norm_dev_max', float('nan')):.3g} / {c.get('row_norm_dev_median', float('nan')):.3g}"
            f" / {100 * c.get('units_ever_won', float('nan')):.1f}%" for k, c in conv.items()))
    for m, per_epoch in result.get("seconds_per_epoch", {}).items():
        lines.append(f"{m} seconds per epoch: " + ", ".join(f"k={k}: {v:.2f}" for k, v in per_epoch.items()))
    return "\n".join(lines)
