"""Reproduction of the BioHash paper's Table 1 (MNIST, mAP@All) and Table 2 (CIFAR-10, mAP@1000).

Protocol (paper sec. 3.2): pool the dataset, draw queries per class with a seed, the rest is both the
training set and the database. Hyperparameters of the trained methods were chosen on a validation
split cut from the training set (:func:`tune`), never on the queries; they live beside each encoder as its
preset for the dataset (:func:`hashplug.encoders.get_preset`) and are recorded in the JSON.

The fair protocol (issue 30, :mod:`hashplug.bench.protocol`): every seed's validation split is cut from that
seed's training side minus every reported seed's test queries (:func:`hashplug.bench.tables.
fair_validation_split`; its rows digest and measured overlap in ``"validation"``, a split that shares a test
query is refused); every method's grid over the knobs that apply to it is one
:class:`~hashplug.bench.protocol.TuningBudget` (``"tuning"``: with ``tune=N`` each seed picks every tunable
method's setting among N on its own split, else the presets are used and the grids recorded); the rows
``"chance"`` (expected mAP of a random ranking) and ``"float"`` (cosine on the same pixels) are in every table.

The methods are the registered encoders that have a preset for the dataset (:func:`table_methods`), named
in tables by their display name (:func:`hashplug.encoders.get_tags`); what the bench does differently for
one of them (epochs, the ranking cache of k-independent weights, the largest k) comes from its tags.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..encoders import available_encoders, encoder_class, get_encoder, get_preset, get_tags
from ..metrics import map_from_codes
from ..validation import HashplugError
from . import suite
from .common import write_json
from .suite import Suite, register_suite
from .tables import (  # noqa: F401 (format_table, merge_tables: this module's names since 0.1.0)
    _at_k,
    _codes_digest,
    _subset_per_class,
    fair_validation_split,
    format_table,
    load_data,
    load_protocol,
    merge_tables,
    reference_summary,
    split_data,
    table_references,
    test_queries,
)

__all__ = [
    "PAPER", "DATASETS", "table_methods", "default_hp", "table_setting", "run_table", "merge_tables", "tune",
    "format_table",
]


def _paper_rows() -> dict[str, dict[str, dict[str, float]]]:
    """The paper's Tables 1 and 2 (percent), from the data file ``papers.json`` beside this module."""
    doc = json.loads((Path(__file__).with_name("papers.json")).read_text())
    return {"mnist": doc["tables"]["biohash-mnist"]["rows"], "cifar10": doc["tables"]["biohash-cifar10"]["rows"]}


#: The paper's Tables 1 and 2 (percent), keyed by dataset, method display name and k (as a string).
PAPER: dict[str, dict[str, dict[str, float]]] = _paper_rows()

DATASETS: dict[str, dict[str, Any]] = {
    "mnist": {"table": "BioHash paper Table 1 (MNIST)", "metric": "mAP@All", "R": None, "per_class": 100},
    "cifar10": {"table": "BioHash paper Table 2 (CIFAR-10)", "metric": "mAP@1000", "R": 1000, "per_class": 1000},
}


def table_methods(dataset: str, input_kind: str = "vectors") -> list[str]:
    """Display names of the registered encoders that take ``input_kind`` and have a preset for ``dataset``.

    In the order of the paper's table, then the others in registry order. Encoders of images (BioConvHash)
    have their own table bench (:mod:`hashplug.bench.bioconvhash_tables`).
    """
    paper = list(PAPER.get(dataset, {}))
    names = [
        get_tags(n).display_name
        for n in available_encoders()
        if get_preset(n, dataset) is not None and get_tags(n).input_kind == input_kind
    ]
    return sorted(names, key=lambda n: (paper.index(n) if n in paper else len(paper), names.index(n)))


def default_hp(dataset: str) -> dict[str, dict[str, Any]]:
    """The presets of :func:`table_methods` on ``dataset`` as ``{display name: {params..., "by_k": {...}}}``."""
    return {m: get_preset(m, dataset).as_dict() for m in table_methods(dataset)}


def table_setting(
    dataset: str, methods: Sequence[str] | None = None, hp: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The hyperparameters a table run uses: each method's preset on ``dataset`` (``{}`` without one) with
    the ``hp`` overrides (``{method: {param: value, "by_k": {...}}}``, registry or display names).

    Parameters
    ----------
    dataset : str
    methods : sequence of str or None
        Display names (default :func:`table_methods`).
    hp : dict or None
        Overrides, as ``--hp`` gives them.
    """
    hpd: dict[str, dict[str, Any]] = {}
    for m in methods if methods is not None else table_methods(dataset):
        preset = get_preset(m, dataset)
        hpd[m] = preset.as_dict() if preset is not None else {}
    for m, v in (hp or {}).items():
        hpd.setdefault(_resolve_methods([m])[0], {}).update(v)
    return hpd


def __getattr__(name: str) -> Any:
    # ``DEFAULT_HP[dataset][method]``, the 0.1.0 name of the presets, computed from the registry
    if name == "DEFAULT_HP":
        return {ds: default_hp(ds) for ds in DATASETS}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _resolve_methods(methods: Sequence[str]) -> list[str]:
    """Display names of ``methods`` (registry or display names); unknown names are one clear error."""
    known = {n.lower(): get_tags(n).display_name for n in available_encoders()}
    known.update({d.lower(): d for d in list(known.values())})
    unknown = [m for m in methods if str(m).lower() not in known]
    if unknown:
        raise HashplugError(f"Unknown methods {sorted(unknown)}; use some of {sorted(set(known.values()))}.")
    return list(dict.fromkeys(known[str(m).lower()] for m in methods))

def _params(method: str, k: int, dataset: str, seed: int, hp: dict[str, dict[str, Any]], epochs: int | None):
    """Constructor parameters of ``method`` at ``k``: ``hp[method]`` (default: its preset), per-k overrides."""
    cls = encoder_class(method)
    params: dict[str, Any] = {"k": int(k)}
    if "random_state" in cls._param_names():
        params["random_state"] = int(seed)
    if method in hp:
        params.update(hp[method])
    else:
        preset = get_preset(cls, dataset)
        params.update(preset.as_dict() if preset is not None else {})
    # Optional per-hash-length overrides, e.g. {"by_k": {"2": {"delta": 0.0}}}, chosen on validation too.
    params = _at_k(params, k)
    if epochs is not None and get_tags(cls).iterative:
        params["epochs"] = int(epochs)
    return params


def _ranked_units(enc: Any, X: np.ndarray, kmax: int, chunk: int = 2048) -> np.ndarray:
    """The ``kmax`` best units of every row, best first, ties to the lower unit index: (n, kmax) int32.

    Its first k columns are exactly the units ``topk_mask(scores, k)`` keeps, for every k <= kmax,
    so one pass over the (n, m) scores serves every hash length with bounded memory.
    """
    from ..ranking import ranked_units

    return np.concatenate([ranked_units(enc.scores(X[i : i + chunk]), kmax) for i in range(0, len(X), chunk)])


def _codes_from_ranked(ranked: np.ndarray, k: int, m: int) -> np.ndarray:
    from ..codes import indices_to_packed

    return indices_to_packed(np.sort(ranked[:, :k], axis=1).astype(np.int64), m)


def evaluate(method: str, k: int, split: Any, dataset: str, seed: int, hp: dict, epochs: int | None = None,
             tie_aware: bool = False, verbose: bool = False, cache: dict | None = None) -> dict[str, float]:
    """Fit ``method`` at hash length ``k`` on the split's database and score its queries.

    ``cache`` (a dict with ``"kmax"``, the largest k of the run) keeps the ranked units of methods tagged
    ``k_independent`` between calls; the codes are then exactly what ``encoder.encode`` gives (same graph,
    same top-k rule), without recomputing the (n, m) products for every k.
    """
    cls = encoder_class(method)
    tags = get_tags(cls)
    params = _params(method, k, dataset, seed, hp, epochs)
    if tags.iterative:
        params["verbose"] = verbose
    enc = get_encoder(cls.method_name, **params)
    Xdb = split.Xdb.astype(np.float32) / 255.0
    Xq = split.Xq.astype(np.float32) / 255.0
    key = (method, seed, split.name)
    ranked = cache is not None and tags.k_independent
    if ranked and cache.get("key") == key and cache["db"].shape[1] >= k:
        t_fit, m = cache["fit"]  # same weights as a fresh fit: reuse the ranking
    else:
        t0 = time.perf_counter()
        enc.fit(Xdb)
        t_fit, m = time.perf_counter() - t0, enc.m_
        if ranked:
            kmax = max(int(cache.get("kmax", k)), k)
            cache.update(key=key, fit=(t_fit, m), db=_ranked_units(enc, Xdb, kmax), q=_ranked_units(enc, Xq, kmax))
    if ranked:
        cdb, cq = _codes_from_ranked(cache["db"], k, m), _codes_from_ranked(cache["q"], k, m)
    else:
        cdb, cq = enc.encode(Xdb), enc.encode(Xq)
    R = DATASETS[dataset]["R"]
    out = {"map": 100 * map_from_codes(cq, cdb, split.yq, split.ydb, limit=R), "fit_seconds": t_fit, "m": m,
           "codes_sha256": _codes_digest(cq, cdb)}
    if tie_aware:
        out["map_tie_aware"] = 100 * map_from_codes(cq, cdb, split.yq, split.ydb, limit=R, tie_aware=True)
    if tags.iterative:
        out["epochs"] = int(enc.get_params()["epochs"])
        norms = getattr(enc, "row_norms_", None)  # plasticity-rule encoders: rows converge to unit p-norm
        if norms is not None:
            dev = np.abs(norms.astype(np.float64) - 1.0)
            out["row_norm_max_dev"] = float(np.max(dev))
            out["row_norm_median_dev"] = float(np.median(dev))
        won = getattr(enc, "units_ever_won_", None)  # share of units ranked first at least once in training
        if won is not None:
            out["units_ever_won"] = float(won)
    return out


def run_table(
    dataset: str,
    data: str | Path | None = None,
    ks: Sequence[int] | None = None,
    seeds: int | Sequence[int] = 3,
    methods: Sequence[str] | None = None,
    out: str | Path | None = None,
    hp: dict[str, dict[str, Any]] | None = None,
    epochs: int | None = None,
    limit: int | None = None,
    tie_aware: bool = True,
    verbose: bool = True,
    tune_budget: int | None = None,
    tune_ks: Sequence[int] | None = None,
    report_seeds: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Run the table; return (and optionally write) the JSON-shaped result.

    Parameters
    ----------
    dataset : {"mnist", "cifar10"}
    data : path or None
        Dataset file (default: the shared data folder).
    ks : sequence of int
        Hash lengths; a method tagged with ``paper_max_k`` skips larger ones as the paper does (BioHash: 64).
    seeds : int or sequence of int
        Number of seeds (0..n-1) or the seeds themselves; results are averaged.
    methods : sequence of str
        Registered encoders by registry or display name (default :func:`table_methods`: those with a
        preset for ``dataset``).
    out : path or None
        Where to write the JSON.
    hp : dict
        ``{method: {param: value, "by_k": {...}}}`` overriding the methods' presets for this dataset.
    epochs : int or None
        Override the training epochs of the iterative encoders (for quick runs).
    limit : int or None
        Use a stratified subset of this many images (smoke tests only; not the paper protocol).
    tie_aware : bool
        Also report the tie-aware (expected over random tie orders) mAP.
    tune_budget : int or None
        None: every method at its preset (the grids are still recorded). N: on every seed, every method with a
        tuning grid scores N settings of it (the same N for all: :class:`~hashplug.bench.protocol.TuningBudget`)
        on the seed's own validation split and is tested at the best (mean validation mAP over ``tune_ks``).
    tune_ks : sequence of int or None
        Hash lengths whose mean validation mAP ranks the settings (default: the table's ``ks``).
    report_seeds : sequence of int or None
        Every seed the finished table reports (default ``seeds``): a run of some of them (``--seed-list``, to be
        merged) keeps every reported seed's test queries out of its validation splits.
    """
    from tqdm.auto import tqdm

    from .protocol import TuningBudget

    if dataset not in DATASETS:
        raise HashplugError(f"Unknown dataset {dataset!r}; use one of {sorted(DATASETS)}.")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    ks = [int(k) for k in (ks or [2, 4, 8, 16, 32, 64])]
    methods = _resolve_methods(methods) if methods else table_methods(dataset)
    tags = {m: get_tags(m) for m in methods}
    hpd = table_setting(dataset, methods, hp)

    def runs(m: str, k: int) -> bool:
        return tags[m].paper_max_k is None or k <= tags[m].paper_max_k

    budget = TuningBudget({m: dict(encoder_class(m).tuning_grid or {}) for m in methods}, budget=tune_budget)
    reported = sorted(set(seed_list) | {int(s) for s in (report_seeds or ())})
    fair = _FairProtocol(dataset, data, reported, limit, budget, tune_budget is not None,
                         [int(k) for k in (tune_ks or ks)], epochs)
    per: dict[str, dict[str, list[dict[str, float]]]] = {m: {} for m in methods}
    jobs = [(s, m, k) for s in seed_list for m in methods for k in ks if runs(m, k)]
    bar = tqdm(total=len(jobs), desc=f"bench {dataset}", disable=not verbose)
    t_all = time.perf_counter()
    cache: dict = {"kmax": max(ks)}
    n_train = None
    done: list[int] = []
    cells_all = [f"{m} k={k}" for m in methods for k in ks if runs(m, k)]
    cells_now: list[str] = []

    def summary() -> dict[str, Any]:
        seen = list(dict.fromkeys(r["seed"] for byk in per.values() for v in byk.values() for r in v))
        return fair.add_to(_summarise(per, methods, tags, hpd, seen, dataset, epochs, limit, tie_aware, n_train,
                                      t_all), seen, ks)

    for s in seed_list:
        split = fair.split(s, hpd)
        hps = fair.hp(s, hpd)
        n_train = len(split.ydb) if n_train is None else n_train
        for m in methods:
            for k in ks:
                if not runs(m, k):
                    continue
                bar.set_postfix_str(f"seed={s} {m} k={k}")
                res = evaluate(m, k, split, dataset, s, hps, epochs, tie_aware, verbose=False, cache=cache)
                per[m].setdefault(str(k), []).append({**res, "seed": s})
                bar.update(1)
                cells_now.append(f"{m} k={k}")
                if out and (len(done) < len(seed_list) - 1 or cells_now != cells_all):
                    # a long run keeps what it measured: after every cell, the JSON of the cells done so far,
                    # marked partial ("seeds_by_cell" tells which; --merge takes them cell by cell)
                    whole = cells_now == cells_all
                    note = f"seeds {done + [s] if whole else done} of {seed_list}"
                    write_json({**summary(), "partial": note if whole else f"{note}; seed {s}: {', '.join(cells_now)}"},
                               out)
        done.append(s)
        cells_now = []
    bar.close()
    result = summary()
    write_json(result, out)
    return result


class _FairProtocol:
    """The fair protocol of one table run: the data loaded once, every reported seed's test queries, each
    seed's validation split (cut and checked before its cells run), the per-seed picks and the reference rows.
    """

    def __init__(self, dataset: str, data: str | Path | None, seeds: list[int], limit: int | None, budget: Any,
                 tuned: bool, tune_ks: list[int], epochs: int | None) -> None:
        self.dataset, self.seeds, self.budget, self.tuned, self.tune_ks = dataset, seeds, budget, tuned, tune_ks
        self.epochs = epochs
        self.X, self.y, self.name = load_data(dataset, data, limit)
        self.queries = test_queries(dataset, self.y, seeds, self.name)
        self.per_class = min(100, DATASETS[dataset]["per_class"])
        self.records: dict[str, Any] = {}
        self.picks: dict[str, dict[str, Any]] = {}
        self.scores: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.refs: dict[str, dict[int, float]] = {"chance": {}, "float": {}}

    def split(self, s: int, hpd: dict[str, dict[str, Any]]) -> Any:
        """Seed ``s``'s test split, after its validation split is cut and checked (and, if tuned, searched)."""
        split = split_data(self.dataset, self.X, self.y, s, self.name)
        per_class = self.per_class
        if self.name != self.dataset:  # a smoke-run subset: as many validation queries per class as it allows
            per_class = _subset_per_class(split.ydb, per_class)
        val, rec = fair_validation_split(split, self.queries, per_class)
        self.records[str(s)] = rec
        if self.tuned:
            self._search(s, val, hpd)
        for r, v in table_references(split, DATASETS[self.dataset]["R"]).items():
            self.refs[r][s] = v
        return split

    def _search(self, s: int, val: Any, hpd: dict[str, dict[str, Any]]) -> None:
        from .protocol import flat_setting

        for m, settings in self.budget.settings.items():
            if not self.budget.grids.get(m):
                continue
            rows = []
            for g in settings:
                combo = flat_setting(g)
                hp = {m: {**hpd.get(m, {}), **combo}}
                sc = {str(k): round(evaluate(m, k, val, self.dataset, s, hp, self.epochs, tie_aware=True)
                                    ["map_tie_aware"], 2) for k in self.tune_ks}
                rows.append({"params": combo, "val_map": sc, "mean": round(float(np.mean(list(sc.values()))), 2)})
            self.scores.setdefault(str(s), {})[m] = rows
            self.picks.setdefault(str(s), {})[m] = max(rows, key=lambda r: r["mean"])["params"]

    def hp(self, s: int, hpd: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The settings seed ``s`` is tested at: the presets, with the seed's picks over them if tuned."""
        return {m: {**v, **self.picks.get(str(s), {}).get(m, {})} for m, v in hpd.items()}

    def add_to(self, result: dict[str, Any], seen: Sequence[int], ks: Sequence[int]) -> dict[str, Any]:
        """``result`` with the protocol's keys (``"validation"``, ``"tuning"``, ``"references_per_seed"``) and the
        rows ``"chance"`` and ``"float"`` in ``"rows"`` / ``"std"`` (the seeds in ``seen`` that are done)."""
        done = [s for s in seen if s in self.refs["chance"]]
        refs = reference_summary({r: [v[s] for s in done] for r, v in self.refs.items()}, ks)
        out: dict[str, Any] = {
            "validation": {
                "splits": "per seed: validation queries (per class) and database cut from that seed's training side "
                          "(its database) minus every reported seed's test queries (hashplug.bench.tables."
                          "fair_validation_split); 'overlap' is measured, zero or the run refuses",
                "per_seed": self.records,
            },
            "tuning": {**self.budget.to_json(), "mode": "tuned per seed on its own validation split" if self.tuned
                       else "presets (each preset's source says how it was chosen); the grids a tuned run searches",
                       "tune_ks": self.tune_ks if self.tuned else None},
            "references_per_seed": {r: [round(self.refs[r][s], 2) for s in done] for r in self.refs},
            "references_seeds": done,
            "references": {"chance": "expected mAP of a uniformly random ranking (exact; hashplug.bench.protocol."
                                     "chance_map)", "float": "float cosine on the same pixels the encoders see "
                                                              "(hashplug.bench.protocol.cosine_map)"},
        }
        if self.tuned:
            out["tuning"]["chosen_per_seed"] = self.picks
            out["tuning"]["validation_scores"] = self.scores
        result["rows"].update(refs["rows"])
        result["std"].update(refs["std"])
        result.update(out)
        return result


def _summarise(
    per: dict[str, dict[str, list[dict[str, Any]]]],
    methods: Sequence[str],
    tags: dict[str, Any],
    hpd: dict[str, dict[str, Any]],
    seed_list: Sequence[int],
    dataset: str,
    epochs: int | None,
    limit: int | None,
    tie_aware: bool,
    n_train: int | None,
    t_all: float,
) -> dict[str, Any]:
    """The JSON of :func:`run_table` from the per-seed results ``per[method][k]`` (each with its ``"seed"``);
    ``seed_list``: the seeds that have any cell."""

    def mean(m: str, key: str) -> dict[str, float]:
        return {k: round(float(np.mean([r[key] for r in v])), 2) for k, v in per[m].items() if key in v[0]}

    # The headline metric is the tie-aware mAP (exact expectation over random orders within equal
    # distances): it does not depend on the database's row order. The lower-index-first rule of
    # hamming_search is reported beside it; on a class-sorted database (CIFAR-10's file is sorted by class)
    # that rule leaks the labels through the order of tied items and inflates short codes by up to 14
    # points, while on MNIST the two agree within 0.05.
    key = "map_tie_aware" if tie_aware else "map"
    rows = {m: mean(m, key) for m in methods}
    result: dict[str, Any] = {
        "table": DATASETS[dataset]["table"],
        "metric": DATASETS[dataset]["metric"],
        "rows": rows,
        "paper": {m: PAPER[dataset].get(m, {}) for m in methods},
        "seeds": list(seed_list),
        "hyperparameters": {
            **{m: hpd.get(m, {}) for m in methods},
            "epochs_override": epochs,
            "input_scaling": "pixels / 255",
            "selected_on": "validation split cut from the training set (hashplug bench biohash-tune)",
        },
        "train_seconds": {m: {k: round(float(np.mean([r["fit_seconds"] for r in v])), 2) for k, v in per[m].items()}
                          for m in methods},
        "rows_metric": "tie-aware (expected over random orders of tied items)" if tie_aware
        else "ties to the lower database index",
        "std": {m: {k: round(float(np.std([r[key] for r in v])), 2) for k, v in per[m].items()} for m in methods},
        "per_seed": {m: {k: [round(float(r[key]), 2) for r in v] for k, v in per[m].items()} for m in methods},
        "seeds_by_cell": {m: {k: [int(r["seed"]) for r in v] for k, v in per[m].items()} for m in methods},
        "m": {m: {k: int(v[0]["m"]) for k, v in per[m].items()} for m in methods},
        # per seed: sha256 of the packed query and database codes (bit-identical codes <=> equal digests)
        "codes_sha256": {m: {k: [r["codes_sha256"] for r in v] for k, v in per[m].items()} for m in methods},
        "total_seconds": round(time.perf_counter() - t_all, 1),
        "hashplug_version": __version__,
        "protocol": "paper" if limit is None else f"subset of {limit} images (not the paper protocol)",
    }
    if tie_aware:
        result["rows_tie_aware"] = rows
        result["rows_first_index"] = {m: mean(m, "map") for m in methods}
    for m in methods:
        if any("row_norm_max_dev" in r for v in per[m].values() for r in v):
            # per k, over seeds: the largest max |p-norm - 1|, the mean of the medians, the smallest share
            # of units that ever won during training (the worst seed for the first and the last)
            conv: dict[str, dict[str, float]] = {}
            for k, v in per[m].items():
                c = {"row_norm_dev_max": round(float(np.max([r["row_norm_max_dev"] for r in v])), 4)}
                if all("row_norm_median_dev" in r for r in v):
                    c["row_norm_dev_median"] = round(float(np.mean([r["row_norm_median_dev"] for r in v])), 4)
                if all("units_ever_won" in r for r in v):
                    c["units_ever_won"] = round(float(np.min([r["units_ever_won"] for r in v])), 4)
                conv[k] = c
            result.setdefault("convergence", {})[m] = conv
        if tags[m].iterative and per[m]:
            result.setdefault("seconds_per_epoch", {})[m] = {
                k: round(float(np.mean([r["fit_seconds"] / r["epochs"] for r in v])), 2) for k, v in per[m].items()
            }
    if limit and n_train is not None:
        result["n_train"] = n_train
    return result


def _tuning_setup(dataset: str, method: str | None, grid: Any) -> tuple[str, Any]:
    """The display name of the method to tune and its grid (default: the method's ``tuning_grid``).

    Without ``method``: the one method of :func:`table_methods` that has a tuning grid.
    """
    if method is None:
        tunable = [m for m in table_methods(dataset) if encoder_class(m).tuning_grid]
        if len(tunable) != 1:
            raise HashplugError(f"Name the method to tune (--methods NAME); encoders with a tuning grid: {tunable}.")
        method = tunable[0]
    method = _resolve_methods([method])[0]
    grid = grid or encoder_class(method).tuning_grid
    if not grid:
        raise HashplugError(f"{method} has no default tuning grid; pass one (--grid JSON).")
    return method, grid


def tune(
    dataset: str,
    data: str | Path | None = None,
    ks: Sequence[int] = (2, 8, 32),
    grid: dict[str, list[Any]] | list[dict[str, Any]] | None = None,
    method: str | None = None,
    epochs: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    limit: int | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Grid search on a validation split cut from the training set (queries never seen).

    Scores every combination of ``grid`` (a dict of value lists, expanded as a product, or an explicit
    list of parameter dicts) at each ``k``; the best combination by mean validation mAP over ``ks`` is
    returned with the whole table. The validation queries (100 per class) and their database come from
    the protocol's training set only.

    ``method`` (registry or display name) defaults to the one method of :func:`table_methods` that has a
    ``tuning_grid``; ``grid`` defaults to that grid. The search starts from the method's preset.
    """
    from tqdm.auto import tqdm

    from ..data import validation_split

    method, grid = _tuning_setup(dataset, method, grid)
    split = load_protocol(dataset, data, seed, limit)
    per_class = min(100, DATASETS[dataset]["per_class"])
    if limit is not None:  # a smoke-run subset: as many validation queries per class as it allows
        per_class = _subset_per_class(split.ydb, per_class)
    val = validation_split(split, per_class=per_class, seed=seed + 1000)
    if isinstance(grid, dict):
        keys = list(grid)
        combos = [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]
    else:
        combos = [dict(c) for c in grid]
    preset = get_preset(method, dataset)
    base = preset.as_dict() if preset is not None else {}
    rows: list[dict[str, Any]] = []

    def result() -> dict[str, Any]:
        return {"dataset": dataset, "method": method, "ks": list(ks), "base": base, "grid": grid,
                "validation": {"n_queries": val.n_queries, "n_db": val.n_db, "seed": seed},
                "rows": rows, "best": max(rows, key=lambda r: r["mean"])}

    for combo in tqdm(combos, desc=f"tune {method} {dataset}", disable=not verbose):
        hp = {method: {**base, **combo}}
        scores = {str(k): round(evaluate(method, k, val, dataset, seed, hp, epochs, tie_aware=True)["map_tie_aware"], 2)
                  for k in ks}
        rows.append({"params": combo, "val_map": scores, "mean": round(float(np.mean(list(scores.values()))), 2)})
        if verbose:
            print(json.dumps(rows[-1]), flush=True)
        if len(rows) < len(combos):  # a long search keeps the settings scored so far, marked partial
            write_json({**result(), "partial": f"{len(rows)} of {len(combos)} settings"}, out)
    final = result()
    write_json(final, out)
    return final


# ==================================================================================================== suites
def _add_seed_flags(parser: argparse.ArgumentParser) -> None:
    """``--seeds`` / ``--seed-list`` of the paper-table suites (also the BioConvHash table)."""
    parser.add_argument("--seeds", type=int, default=3,
                        help="number of seeds: the query draw and the training of seeds 0 .. N-1, the table holds "
                             "the mean (default 3)")
    parser.add_argument("--seed-list", type=int, nargs="+", default=None,
                        help="run exactly these seeds instead of 0 .. --seeds - 1 (e.g. one per session, then --merge)")


class BioHashTableSuite(Suite):
    """``hashplug bench biohash-mnist | biohash-cifar10``: the BioHash paper's Table 1 / Table 2."""

    #: suite name -> dataset: one name per dataset of the tables
    datasets = {f"biohash-{ds}": ds for ds in DATASETS}
    names = tuple(datasets)
    help = "BioHash paper Table 1 (MNIST, mAP@All) / Table 2 (CIFAR-10, mAP@1000): ours beside the paper's"

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        suite.add_data(parser, f"{self.datasets[name].upper()} file")
        suite.add_lengths(parser, "hash lengths (active units), each a column (default 2 4 8 16 32 64)")
        _add_seed_flags(parser)
        parser.add_argument("--methods", nargs="+", default=None,
                            help="table rows, registry or display names (default: the encoders with a preset "
                                 "for the dataset)")
        suite.add_epochs(parser)
        suite.add_max_rows(parser, "a stratified subset of N images before the split (smoke runs; not the paper "
                                 "protocol)")
        suite.add_hp(parser, '{method: {param: value, "by_k": {...}}} over the presets, e.g. \'{"BioHash": {"delta": 0.1}}\'')
        parser.add_argument("--tune", type=int, default=None, metavar="N",
                            help="tune every method with a grid on each seed's own validation split, N settings "
                                 "each (the same budget for all; default: the presets)")
        parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                            help="combine these result JSONs of runs on other seeds into --out (no training): "
                                 "cell by cell, the cells at today's presets (with --hp) are merged, the others "
                                 "listed as left out")
        suite.add_out(parser)

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        return run_table(
            self.datasets[name],
            args.data,
            ks=suite.lengths_of(args),
            seeds=list(args.seed_list) if args.seed_list else args.seeds,
            methods=args.methods,
            out=args.out,
            hp=json.loads(args.hp) if args.hp else None,
            epochs=args.epochs,
            limit=suite.max_rows_of(args),
            tune_budget=getattr(args, "tune", None),
            # a --seed-list run is part of a table of --seeds seeds (and those listed)
            report_seeds=sorted(set(range(args.seeds)) | set(args.seed_list or ())),
        )

    def merge(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        ds = self.datasets[name]
        # cell by cell, the runs' cells at today's presets (with --hp) are merged; the others are listed
        target = table_setting(ds, hp=json.loads(args.hp) if args.hp else None)
        res = merge_tables(args.merge, target=target)
        if res.get("table") != DATASETS[ds]["table"]:
            raise HashplugError(f"the merged runs are {res.get('table')!r} tables, not {DATASETS[ds]['table']!r}.")
        write_json(res, args.out)
        return res

    def print(self, name: str, result: dict[str, Any], args: argparse.Namespace) -> None:
        print(format_table(result))
        if not getattr(args, "merge", None):
            print(f"total {result['total_seconds']} s" + (f"; wrote {args.out}" if args.out else ""))
            return
        for c in result.get("left_out", []):
            print(f"left out {c['path']}: {c['method']} k={c['k']} seeds {c['seeds']} "
                  f"(differs from the preset in {', '.join(c['differs_in'])})")
        print(f"merged seeds {result['seeds']}" + (f"; wrote {args.out}" if args.out else ""))


class BioHashTuneSuite(Suite):
    """``hashplug bench biohash-tune-mnist | biohash-tune-cifar10``: :func:`tune` on a validation split."""

    #: suite name -> dataset
    datasets = {f"biohash-tune-{ds}": ds for ds in DATASETS}
    names = tuple(datasets)
    help = "grid search of a table method's hyperparameters on a validation split cut from the training set"

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        suite.add_data(parser, f"{self.datasets[name].upper()} file")
        suite.add_lengths(parser, "hash lengths whose mean validation mAP ranks the settings (default 2 8 32)")
        parser.add_argument("--methods", nargs="+", default=None,
                            help="the method to tune (the first name; default: the one table method with a "
                                 "tuning grid)")
        suite.add_grid(parser, "parameter -> values (a product) or a list of settings (default: the method's tuning grid)")
        suite.add_epochs(parser)
        suite.add_max_rows(parser, "a stratified subset of N images before the split (smoke runs)")
        suite.add_out(parser)

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        return tune(self.datasets[name], args.data, ks=suite.lengths_of(args) or (2, 8, 32), epochs=args.epochs, out=args.out,
                    limit=suite.max_rows_of(args), grid=json.loads(args.grid) if args.grid else None,
                    method=(args.methods or [None])[0])

    def print(self, name: str, result: dict[str, Any], args: argparse.Namespace) -> None:
        print(json.dumps(result["best"], indent=2))


for _suite in (BioHashTableSuite, BioHashTuneSuite):
    register_suite(_suite)
