"""``hashplug bench bioconvhash-mnist|bioconvhash-cifar10``: the BioHash paper's BioConvHash rows of
Tables 1 and 2, Table 4's k_CI ablation (``--kci``), the shadows experiment of sec. 3.4 (``--shadows``)
and a PNG of the learned filters.

Protocol as :mod:`hashplug.bench.biohash_tables` (same splits, metric, tie-aware mAP and JSON shape).
The filter stage of BioConvHash does not depend on the hash length or on k_CI (the filters are learned on
patches; k_CI only acts in the forward pass), so each seed trains the filters once
(:meth:`~hashplug.encoders.BioConvHash.fit_filters`), computes the pooled features once per k_CI, and
trains a BioHash layer per hash length (:meth:`~hashplug.encoders.BioConvHash.fit_layer`). Codes come
from the features through the layer (:meth:`~hashplug.encoders.BioConvHash.codes_from_features`); for
every seed a sample of queries is also encoded end to end by ``encoder.encode`` (numpy) and, on the first
seed, by the exported ONNX model, and the agreement is recorded.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..encoders import BioConvHash, get_preset
from ..metrics import map_from_codes
from ..validation import HashplugError
from . import suite
from .biohash_tables import DATASETS, PAPER
from .suite import Suite, register_suite
from .tables import (
    _at_k,
    _codes_digest,
    _subset_per_class,
    fair_validation_split,
    load_data,
    merge_tables,
    reference_summary,
    split_data,
    table_references,
    test_queries,
)

__all__ = ["KCI_ABLATION", "PAPER_KCI", "shadow", "run_conv_table", "format_conv_table", "plot_filters",
           "bench_bioconvhash"]

#: Table 4's k_CI values (the default of ``--kci`` without values).
KCI_ABLATION: tuple[int, ...] = (1, 5, 10, 25, 100)
#: Table 4's hash lengths.
KCI_KS: tuple[int, ...] = (2, 4, 8, 16)

#: The validation split of BioConvHash's searches (``benchmarks/tune_bioconvhash.py``) and the one every table
#: run records per seed: queries per class and database rows, cut from the seed's training side minus every
#: reported seed's test queries (:func:`hashplug.bench.tables.fair_validation_split`).
VALIDATION: dict[str, int] = {"per_class": 100, "n_db": 20_000}


def _paper_kci() -> dict[str, dict[str, dict[str, float]]]:
    doc = json.loads((Path(__file__).with_name("papers.json")).read_text())["tables"]
    return {ds: doc[f"bioconvhash-kci-{ds}"]["rows"] for ds in ("mnist", "cifar10")}


#: Table 4 (percent): ``PAPER_KCI[dataset][str(k_CI)][str(k)]``.
PAPER_KCI: dict[str, dict[str, dict[str, float]]] = _paper_kci()

# the layer's settings a preset holds (the encoder's list less what the bench sets per run)
_LAYER = tuple(p for p in BioConvHash.LAYER_PARAMS if p not in ("k", "random_state", "verbose", "device"))
_FORWARD = BioConvHash.FORWARD_PARAMS


def _forward_params(params: dict[str, Any]) -> dict[str, Any]:
    """The forward-pass parameters of ``params`` (they decide the pooled features; the filters stay)."""
    return {kk: params[kk] for kk in _FORWARD if kk in params}


def shadow(X: np.ndarray, strength: float = 0.75) -> np.ndarray:
    """Darken images by a smooth intensity ramp across the width: 1 at the left edge, 1 - strength at the right.

    X: (n, H, W) or (n, C, H, W); returns float32 of the same shape.
    """
    X = np.asarray(X, dtype=np.float32)
    W = X.shape[-1]
    ramp = (1.0 - float(strength) * np.linspace(0.0, 1.0, W)).astype(np.float32)
    return X * ramp


def _images(split: Any, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Query and database images, float32, channels first ((n, H, W) for MNIST, (n, 3, 32, 32) for CIFAR-10)."""
    Xq, Xdb = split.Xq, split.Xdb
    if Xq.ndim == 4:  # (n, H, W, C) as stored -> (n, C, H, W)
        Xq, Xdb = Xq.transpose(0, 3, 1, 2), Xdb.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(Xq, dtype=np.float32), np.ascontiguousarray(Xdb, dtype=np.float32)


def _params(dataset: str, k: int, seed: int, hp: dict[str, Any], epochs: int | None, verbose: bool) -> dict[str, Any]:
    preset = get_preset(BioConvHash, dataset)
    if preset is None:
        raise HashplugError(f"BioConvHash has no preset for {dataset!r}; pass every parameter with --hp.")
    params = {**preset.for_k(k), **_at_k(hp, k)}
    if epochs is not None:
        params["epochs"] = int(epochs)
    params.update(k=int(k), random_state=int(seed), verbose=verbose)
    return params


def _layer_params(params: dict[str, Any]) -> dict[str, Any]:
    return {kk: params[kk] for kk in _LAYER if kk in params}


def _score(enc: BioConvHash, Fq: np.ndarray, Fdb: np.ndarray, split: Any, R: int | None) -> dict[str, Any]:
    cq, cdb = enc.codes_from_features(Fq), enc.codes_from_features(Fdb)
    return {
        "map": 100 * map_from_codes(cq, cdb, split.yq, split.ydb, limit=R),
        "map_tie_aware": 100 * map_from_codes(cq, cdb, split.yq, split.ydb, limit=R, tie_aware=True),
        "codes_sha256": _codes_digest(cq, cdb),
    }


def _onnx_check(enc: BioConvHash, X: np.ndarray, batches: Sequence[int] = (1, 1024)) -> dict[str, Any]:
    """Export ``enc``; codes of onnxruntime vs ``encode`` (numpy) on X by :func:`hashplug.export.check_parity`
    (differing rows, and how many of them are float32 near-ties at the top-k cut); ONNX time per image by batch."""
    from ..export import check_parity, to_onnx
    from ..runtime import OnnxEncoder, clear_session_cache

    with tempfile.TemporaryDirectory(prefix="hashplug_bioconv_") as tmp:
        path = to_onnx(enc, Path(tmp) / "bioconvhash.onnx")
        t0 = time.perf_counter()
        # bounded memory: the feature maps are (256, F, H', W') per bank
        parity = check_parity(enc, path, X, batch_size=256)
        t_par = time.perf_counter() - t0
        ort = OnnxEncoder(path)
        timing = {}
        for bs in batches:
            xb = X[:bs]
            ort.encode(xb)  # warm-up
            reps = max(3, min(50, int(2048 // bs)))
            t0 = time.perf_counter()
            for _ in range(reps):
                ort.encode(xb)
            timing[str(bs)] = round(1000 * (time.perf_counter() - t0) / (reps * len(xb)), 4)
        size = path.stat().st_size
    del ort
    clear_session_cache()  # onnxruntime keeps its arena (GBs after batch 1,024) while a session lives
    return {
        "n_images": int(len(X)),
        "identical_rows": int(parity["n_rows"] - parity["rows_differing"]),
        "rows_differing": int(parity["rows_differing"]),
        "rows_differing_at_ties": int(parity["rows_differing_at_ties"]),
        "bits_differing": int(parity["bits_differing"]),
        "weights_sha256_match": bool(parity["weights_sha256_match"]),
        "parity_seconds": round(t_par, 2),
        "onnx_ms_per_image": timing,
        "onnx_bytes": int(size),
    }


def run_conv_table(
    dataset: str,
    data: str | Path | None = None,
    ks: Sequence[int] | None = None,
    seeds: int | Sequence[int] = 3,
    kcis: Sequence[int] | None = None,
    shadows: bool = False,
    shadow_strengths: Sequence[float] = (0.75,),
    out: str | Path | None = None,
    hp: dict[str, Any] | None = None,
    epochs: int | None = None,
    limit: int | None = None,
    filters_png: str | Path | None = None,
    onnx_check: int = 10_000,
    verbose: bool = True,
    report_seeds: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Run the BioConvHash table (and optionally Table 4's ablation and the shadows experiment).

    Parameters
    ----------
    dataset : {"mnist", "cifar10"}
    data : path or None
        Dataset file (default: the shared data folder).
    ks : sequence of int
        Hash lengths (default 2, 4, 8, 16, 32).
    seeds : int or sequence of int
        Number of seeds (0..n-1) or the seeds; results are averaged.
    kcis : sequence of int or None
        k_CI values of the ablation (Table 4, at the hash lengths 2, 4, 8, 16 that are in ``ks``, with the
        first k's pooling); None: no ablation.
    shadows : bool
        Also score queries darkened by :func:`shadow` at k = 16 (or the largest k <= 16): BioConvHash with
        and without patch normalisation, and BioHash (its preset for the dataset), clean and shadowed.
    shadow_strengths : sequence of float
        Strengths of the shadow ramp (:func:`shadow`; queries only, so each extra strength costs only the
        queries' features). 0.75 is reported as ``"shadowed"``, others as ``"shadowed <strength>"``.
    out : path or None
        Where to write the JSON.
    hp : dict or None
        BioConvHash parameters overriding its preset (``"by_k": {"16": {...}}`` for per-k layer settings).
    epochs : int or None
        Override the BioHash layer's epochs (quick runs).
    limit : int or None
        A stratified subset of this many images (smoke tests only; not the paper protocol).
    filters_png : path or None
        Write a grid of the first seed's learned filters there.
    onnx_check : int
        Database images encoded by numpy and by the exported ONNX model on the first seed (0: skip).
    report_seeds : sequence of int or None
        Every seed the finished table reports (default ``seeds``): each seed's validation split (recorded in
        ``"validation"``) excludes all their test queries.
    """
    if dataset not in DATASETS:
        raise HashplugError(f"Unknown dataset {dataset!r}; use one of {sorted(DATASETS)}.")
    if onnx_check:  # imported now: a lazy import an hour later would read whatever the source tree holds by then
        from ..export import to_onnx  # noqa: F401
    hp = dict(hp or {})
    if set(hp) <= {"BioConvHash", "bioconvhash"} and hp:  # the table bench's {method: {...}} form
        hp = dict(next(iter(hp.values())))
    run = _ConvTableRun(
        dataset, data, ks=[int(k) for k in (ks or [2, 4, 8, 16, 32])],
        seeds=list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds],
        kcis=[int(v) for v in kcis] if kcis else [], shadows=shadows, shadow_strengths=shadow_strengths, out=out,
        hp=hp, epochs=epochs, limit=limit, filters_png=filters_png, onnx_check=onnx_check, verbose=verbose,
        report_seeds=report_seeds,
    )
    for s in run.seeds:
        run.run_seed(s)
    run.bar.close()
    result = run.assemble()
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2))
    return result


class _ConvTableRun:
    """One run of the BioConvHash table: its settings, the cells measured so far and the JSON they make."""

    def __init__(self, dataset: str, data: str | Path | None, *, ks: list[int], seeds: list[int], kcis: list[int],
                 shadows: bool, shadow_strengths: Sequence[float], out: str | Path | None, hp: dict[str, Any],
                 epochs: int | None, limit: int | None, filters_png: str | Path | None, onnx_check: int,
                 verbose: bool, report_seeds: Sequence[int] | None = None) -> None:
        from tqdm.auto import tqdm

        self.dataset, self.data, self.ks, self.seeds, self.kcis = dataset, data, ks, seeds, kcis
        self.shadows, self.shadow_strengths, self.out, self.hp, self.epochs = shadows, shadow_strengths, out, hp, epochs
        self.limit, self.filters_png, self.onnx_check, self.verbose = limit, filters_png, onnx_check, verbose
        self.R = DATASETS[dataset]["R"]
        self.abl_ks = [k for k in ks if k in KCI_KS] or ks[:1]
        self.t_all = time.perf_counter()
        self.per: dict[str, list[dict[str, Any]]] = {}
        self.abl: dict[str, dict[str, list[float]]] = {}
        self.abl_won: dict[str, dict[str, list[float]]] = {}  # share of layer units that ever won, per k_CI and k
        self.shadow_res: dict[str, list[float]] = {}
        self.timings: list[dict[str, Any]] = []
        self.checks: dict[str, Any] = {}
        self.n_train: int | None = None
        self.base = self.params(ks[0], 0)
        # the fair protocol: the data loaded once, every reported seed's test queries, per seed the validation
        # split's record and the reference rows
        self.X, self.y, self.name = load_data(dataset, data, limit, flat=False)
        self.queries = test_queries(dataset, self.y, sorted(set(seeds) | {int(s) for s in (report_seeds or ())}),
                                    self.name)
        self.records: dict[str, Any] = {}
        self.refs: dict[str, dict[int, float]] = {"chance": {}, "float": {}}
        self.bar = tqdm(total=len(seeds) * (len(ks) + len(kcis) * len(self.abl_ks)), desc=f"bioconvhash {dataset}",
                        disable=not verbose)

    def params(self, k: int, seed: int, verbose: bool = False) -> dict[str, Any]:
        return _params(self.dataset, k, seed, self.hp, self.epochs, verbose)

    # ------------------------------------------------------------------------------------------------ JSON
    def assemble(self) -> dict[str, Any]:
        """The result JSON of the cells measured so far."""
        result = self._table()
        if self.kcis:
            result["kci_ablation"] = self._kci_ablation()
        if self.shadows:
            result["shadows"] = self._shadows()
        if self.limit and self.n_train is not None:
            result["n_train"] = self.n_train
        if self.filters_png:
            result["filters_png"] = str(self.filters_png)
        return result

    def _table(self) -> dict[str, Any]:
        dataset, per, ks, base, epochs, hp = self.dataset, self.per, self.ks, self.base, self.epochs, self.hp

        def mean(key: str) -> dict[str, float]:
            return {k: round(float(np.mean([r[key] for r in v])), 2) for k, v in per.items()}

        rows = {"BioConvHash": mean("map_tie_aware")}
        done = [s for s in self.seeds if s in self.refs["chance"]]
        refs = reference_summary({r: [v[s] for s in done] for r, v in self.refs.items()}, list(per))
        rows.update(refs["rows"])
        return {
            "dataset": dataset,
            "table": DATASETS[dataset]["table"].replace("BioHash paper", "BioHash paper, BioConvHash row of"),
            "metric": DATASETS[dataset]["metric"],
            "rows": rows,
            "paper": {"BioConvHash": PAPER[dataset].get("BioConvHash", {})},
            "seeds": self.seeds,
            "hyperparameters": {
                "BioConvHash": {kk: v for kk, v in base.items() if kk not in ("k", "random_state", "verbose")},
                "by_k": {str(k): {**_layer_params(kp), **_forward_params(kp)}
                         for k in ks for kp in [_params(dataset, k, 0, hp, epochs, False)]},
                "epochs_override": epochs,
                "input_scaling": "raw pixels; the encoder divides by the largest training value (255)",
                "selected_on": "validation split cut from the training set (see the preset's source)",
                "preset_source": get_preset(BioConvHash, dataset).source,
            },
            "train_seconds": {"BioConvHash": {k: round(float(np.mean([r["fit_seconds"] for r in v])), 2)
                                              for k, v in per.items()}},
            "rows_metric": "tie-aware (expected over random orders of tied items)",
            "std": {"BioConvHash": {k: round(float(np.std([r["map_tie_aware"] for r in v])), 2) for k, v in per.items()},
                    **refs["std"]},
            "references_per_seed": {r: [round(self.refs[r][s], 2) for s in done] for r in self.refs},
            "references_seeds": done,
            "references": {"chance": "expected mAP of a uniformly random ranking (exact; hashplug.bench.protocol."
                                     "chance_map)", "float": "float cosine on the same pixels the encoder sees "
                                                              "(hashplug.bench.protocol.cosine_map)"},
            "validation": {
                "splits": f"per seed: {VALIDATION['per_class']} validation queries per class and a "
                          f"{VALIDATION['n_db']:,}-row database (benchmarks/tune_bioconvhash.py's sizes) cut from that "
                          "seed's training side minus every reported seed's test queries (hashplug.bench.tables."
                          "fair_validation_split); 'overlap' is measured, zero or the run refuses",
                "per_seed": dict(self.records),
            },
            "tuning": {"grids": {"BioConvHash": dict(BioConvHash.tuning_grid or {})},
                       "mode": "presets (the preset's source says how it was chosen: benchmarks/tune_bioconvhash.py "
                               "on seed 0's validation split)"},
            "per_seed": {"BioConvHash": {k: [round(float(r["map_tie_aware"]), 2) for r in v] for k, v in per.items()}},
            "m": {"BioConvHash": {k: int(v[0]["m"]) for k, v in per.items()}},
            "n_features_pooled": {"BioConvHash": {k: int(v[0]["n_features_pooled"]) for k, v in per.items()}},
            "codes_sha256": {"BioConvHash": {k: [r["codes_sha256"] for r in v] for k, v in per.items()}},
            "rows_tie_aware": rows,
            "rows_first_index": {"BioConvHash": mean("map")},
            "convergence": {"BioConvHash": {k: {
                "row_norm_dev_max": round(float(np.max([r["convergence"]["row_norm_dev_max"] for r in v])), 4),
                "row_norm_dev_median": round(float(np.mean([r["convergence"]["row_norm_dev_median"] for r in v])), 4),
                "units_ever_won": round(float(np.min([r["convergence"]["units_ever_won"] for r in v])), 4),
            } for k, v in per.items()}},
            "seconds_per_epoch": {"BioConvHash": {k: round(float(np.mean([r["fit_seconds"] / r["epochs"] for r in v])), 2)
                                                  for k, v in per.items()}},
            "filter_stage": self.timings,
            "checks": self.checks,
            "total_seconds": round(time.perf_counter() - self.t_all, 1),
            "hashplug_version": __version__,
            "protocol": "paper" if self.limit is None else f"subset of {self.limit} images (not the paper protocol)",
        }

    def _kci_ablation(self) -> dict[str, Any]:
        abl, abl_won = self.abl, self.abl_won
        return {
            "metric": DATASETS[self.dataset]["metric"] + " tie-aware",
            "rows": {c: {k: round(float(np.mean(v)), 2) for k, v in r.items()} for c, r in abl.items()},
            "per_seed": {c: {k: [round(float(x), 2) for x in v] for k, v in r.items()} for c, r in abl.items()},
            "paper": {c: PAPER_KCI[self.dataset].get(c, {}) for c in abl},
            "ks": self.abl_ks,
            "units_ever_won": {c: {k: round(float(np.min(v)), 4) for k, v in r.items()} for c, r in abl_won.items()},
        }

    def _shadows(self) -> dict[str, Any]:
        return {
            "metric": DATASETS[self.dataset]["metric"] + " tie-aware",
            "shadow": "queries multiplied by a ramp across the width, 1 at the left edge to 1 - strength at the "
                      "right (hashplug.bench.bioconvhash_tables.shadow); 'shadowed' is strength 0.75, "
                      "'shadowed <s>' strength s; database clean",
            "strengths": [float(v) for v in self.shadow_strengths],
            "rows": {kk: round(float(np.mean(v)), 2) for kk, v in self.shadow_res.items()},
            "per_seed": {kk: [round(float(x), 2) for x in v] for kk, v in self.shadow_res.items()},
        }

    def checkpoint(self, seed: int, done: bool = False) -> None:
        """Write what is measured so far (a long run that dies keeps its finished parts)."""
        if self.out and self.per:
            res = self.assemble()
            if not done or seed != self.seeds[-1]:
                res["partial"] = f"written during seed {seed}; the run had not finished"
            Path(self.out).parent.mkdir(parents=True, exist_ok=True)
            Path(self.out).write_text(json.dumps(res, indent=2))

    # ------------------------------------------------------------------------------------------------ one seed
    def run_seed(self, s: int) -> None:
        """The filters, the table's hash lengths, the first seed's checks, the ablation and the shadows."""
        split = split_data(self.dataset, self.X, self.y, s, self.name)
        per_class = VALIDATION["per_class"]
        if self.name != self.dataset:  # a smoke-run subset: as many validation queries per class as it allows
            per_class = _subset_per_class(split.ydb, per_class)
        _, self.records[str(s)] = fair_validation_split(split, self.queries, per_class, n_db=VALIDATION["n_db"])
        for r, v in table_references(split, self.R).items():
            self.refs[r][s] = v
        self.n_train = len(split.ydb) if self.n_train is None else self.n_train
        Xq, Xdb = _images(split, self.dataset)
        params = self.params(self.ks[0], s, self.verbose and len(self.seeds) == 1)
        enc = BioConvHash(**params)
        Fdb = enc.fit_filters(Xdb)
        t0 = time.perf_counter()
        Fq = enc.pooled_features(Xq)
        tim = {"seed": s, **{f"{kk}_seconds": round(v, 2) for kk, v in enc.fit_seconds_.items()},
               "query_features_seconds": round(time.perf_counter() - t0, 2), "n_features_pooled": enc.n_features_pooled_,
               "filter_convergence": {"row_norm_dev_max": round(enc.filter_row_norm_dev_max_, 4),
                                      "units_ever_won": round(enc.filter_units_ever_won_, 4)},
               "layer_seconds": {}}
        self.timings.append(tim)  # filled in below; every checkpoint writes what it holds so far
        last_group = self._table_cells(s, enc, params, Fdb, Fq, Xq, Xdb, split, tim)
        # back to the first k's forward settings (Fdb, Fq) for the checks, the shadows and the ablation
        base_fwd = _forward_params(params)
        if tuple(sorted(base_fwd.items())) != last_group:
            enc.fit_layer(Fdb, **_layer_params(self.params(self.ks[0], s)), **base_fwd, k=self.ks[0])
        if s == self.seeds[0] and self.onnx_check:
            self.checks["onnx"] = {"k": int(enc.k_), **_onnx_check(enc, Xdb[: int(self.onnx_check)])}
        if s == self.seeds[0] and self.filters_png:
            plot_filters(enc, self.filters_png, title=f"BioConvHash filters, {self.dataset}, seed {s}")
        self.checkpoint(s)
        base_kci = int(enc.kci)
        for kci in self.kcis:
            self._ablation(s, enc, kci, base_kci, base_fwd, Fdb, Fq, Xq, Xdb, split, tim)
        if self.shadows:
            enc.set_params(kci=base_kci)
            found = _shadows_conv(enc, Fdb, Xq, split, self.dataset, self.ks, s, self.hp, self.epochs, self.R,
                                  self.shadow_strengths)
            del Fdb, Fq  # the unnormalised arm below needs room for its own features
            found.update(_shadows_plain_and_biohash(enc, Xq, Xdb, split, self.dataset, self.ks, s, self.hp,
                                                    self.epochs, self.R, self.shadow_strengths))
            for kk, v in found.items():
                self.shadow_res.setdefault(kk, []).append(v)
        else:
            del Fdb, Fq
        self.checkpoint(s, done=True)

    def _table_cells(self, s: int, enc: BioConvHash, params: dict[str, Any], Fdb: np.ndarray, Fq: np.ndarray,
                     Xq: np.ndarray, Xdb: np.ndarray, split: Any, tim: dict[str, Any]) -> tuple:
        """Every hash length of the table on seed ``s``; returns the forward settings the layer was left at.

        Hash lengths are grouped by their forward-pass settings (a preset may pool differently per k): one
        feature pass per group, the filters are shared.
        """
        groups: dict[tuple, list[int]] = {}
        for k in self.ks:
            fwd = _forward_params(self.params(k, s))
            groups.setdefault(tuple(sorted(fwd.items())), []).append(k)
        feats = {tuple(sorted(_forward_params(params).items())): (Fdb, Fq)}
        for key, group in groups.items():
            if key not in feats:
                enc.set_params(**dict(key))
                t0 = time.perf_counter()
                feats = {key: (enc.pooled_features(Xdb), enc.pooled_features(Xq))}  # keep one group in memory
                tim.setdefault("group_features_seconds", {})[str(dict(key))] = round(time.perf_counter() - t0, 2)
            Fdb_g, Fq_g = feats[key]
            for k in group:
                self.bar.set_postfix_str(f"seed={s} k={k}")
                enc.fit_layer(Fdb_g, **_layer_params(self.params(k, s)), **dict(key), k=k)
                res = _score(enc, Fq_g, Fdb_g, split, self.R)
                res.update(m=int(enc.m_), fit_seconds=enc.fit_seconds_["layer"], epochs=int(enc.epochs),
                           convergence=enc.convergence_, n_features_pooled=int(enc.n_features_pooled_))
                tim["layer_seconds"][str(k)] = round(enc.fit_seconds_["layer"], 2)
                self.per.setdefault(str(k), []).append(res)
                self.bar.update(1)
                self.checkpoint(s)  # a run that dies later keeps every finished hash length
                if k == group[-1]:
                    # end to end: encode() (numpy graph) on a sample of queries vs codes from the torch features
                    n_chk = min(500, len(Xq))
                    same = np.all(enc.encode(Xq[:n_chk]) == enc.codes_from_features(Fq_g[:n_chk]), axis=1)
                    self.checks.setdefault("encode_vs_features", {}).setdefault(str(k), []).append(float(same.mean()))
        return list(groups)[-1]

    def _ablation(self, s: int, enc: BioConvHash, kci: int, base_kci: int, base_fwd: dict[str, Any],
                  Fdb: np.ndarray, Fq: np.ndarray, Xq: np.ndarray, Xdb: np.ndarray, split: Any,
                  tim: dict[str, Any]) -> None:
        """Table 4's cells of one k_CI on seed ``s`` (the table's own layer where the setting is the same)."""
        enc.set_params(kci=min(int(kci), int(enc.n_filters)))
        if int(enc.kci) == base_kci:  # the table's own features
            Fdb_c, Fq_c = Fdb, Fq
        else:
            t0 = time.perf_counter()
            Fdb_c, Fq_c = enc.pooled_features(Xdb), enc.pooled_features(Xq)
            tim.setdefault("kci_features_seconds", {})[str(kci)] = round(time.perf_counter() - t0, 2)
        for k in self.abl_ks:
            self.bar.set_postfix_str(f"seed={s} k_CI={kci} k={k}")
            kp = self.params(k, s)
            if int(enc.kci) == base_kci and _forward_params(kp) == base_fwd:
                # the table's own layer at this k (same features, same layer settings, same seed)
                score = self.per[str(k)][-1]["map_tie_aware"]
                won = self.per[str(k)][-1]["convergence"].get("units_ever_won", float("nan"))
            else:
                enc.fit_layer(Fdb_c, **_layer_params(kp), k=k)
                score = _score(enc, Fq_c, Fdb_c, split, self.R)["map_tie_aware"]
                won = enc.convergence_.get("units_ever_won", float("nan"))
            self.abl.setdefault(str(kci), {}).setdefault(str(k), []).append(score)
            self.abl_won.setdefault(str(kci), {}).setdefault(str(k), []).append(float(won))
            self.bar.update(1)
            self.checkpoint(s)  # every finished (k_CI, k) cell is kept


def _shadow_k(ks: Sequence[int]) -> int:
    return max([kk for kk in ks if kk <= 16] or [min(ks)])


def _shadow_sets(Xq: np.ndarray, strengths: Sequence[float]) -> list[tuple[str, np.ndarray]]:
    """("clean", Xq) and one shadowed copy per strength, named as in the JSON."""
    return [("clean", Xq)] + [("shadowed" if float(v) == 0.75 else f"shadowed {float(v):g}", shadow(Xq, float(v)))
                              for v in strengths]


def _shadows_conv(enc: BioConvHash, Fdb: np.ndarray, Xq: np.ndarray, split: Any, dataset: str, ks: Sequence[int],
                  seed: int, hp: dict, epochs: int | None, R: int | None,
                  strengths: Sequence[float] = (0.75,)) -> dict[str, float]:
    """mAP of clean and shadowed queries at k = 16 (or the largest k <= 16) for the table's BioConvHash."""
    k = _shadow_k(ks)
    kp = _params(dataset, k, seed, hp, epochs, False)
    enc.fit_layer(Fdb, **_layer_params(kp), k=k)
    return {f"BioConvHash k={k} {name}": _score(enc, enc.pooled_features(X), Fdb, split, R)["map_tie_aware"]
            for name, X in _shadow_sets(Xq, strengths)}


def _shadows_plain_and_biohash(enc: BioConvHash, Xq: np.ndarray, Xdb: np.ndarray, split: Any, dataset: str,
                               ks: Sequence[int], seed: int, hp: dict, epochs: int | None,
                               R: int | None, strengths: Sequence[float] = (0.75,)) -> dict[str, float]:
    """The same for BioConvHash without patch normalisation (its own filters) and for BioHash."""
    k = _shadow_k(ks)
    kp = _params(dataset, k, seed, hp, epochs, False)
    out: dict[str, float] = {}
    sets = _shadow_sets(Xq, strengths)
    plain = BioConvHash(**{**kp, "patch_normalize": False, "kci": enc.kci})
    Fdb_p = plain.fit_filters(Xdb)
    plain.fit_layer(Fdb_p, **_layer_params(kp), k=k)
    for name, X in sets:
        out[f"BioConvHash without patch normalisation k={k} {name}"] = _score(
            plain, plain.pooled_features(X), Fdb_p, split, R)["map_tie_aware"]
    del Fdb_p
    flat_db = flat_pixels(Xdb)
    bh = fit_pixel_biohash(flat_db, dataset, k, seed)
    cdb = bh.encode(flat_db)
    for name, X in sets:
        cq = bh.encode(flat_pixels(X))
        out[f"BioHash k={k} {name}"] = 100 * map_from_codes(cq, cdb, split.yq, split.ydb, limit=R, tie_aware=True)
    return out


def flat_pixels(X: np.ndarray) -> np.ndarray:
    """Images as BioHash's input: ``(n, H * W * C)`` float32 pixels scaled to [0, 1] (uint8 images / 255)."""
    return X.reshape(len(X), -1) / np.float32(255.0)


def fit_pixel_biohash(flat_db: np.ndarray, dataset: str, k: int, seed: int) -> Any:
    """BioHash with its preset for ``dataset``, fitted on flattened pixels: the pixel-level reference that
    BioConvHash is compared with (the shadows and the validation searches).

    Parameters
    ----------
    flat_db : ndarray of shape (n, H * W * C), dtype=float32
        The images to fit on, as :func:`flat_pixels` gives them (computed once by the caller, who encodes
        with the same array).
    dataset : str
        Preset name (``"mnist"``, ``"cifar10"``).
    k, seed : int
        Hash length and random state.

    Returns
    -------
    BioHash
        The fitted encoder; encode images with ``bh.encode(flat_pixels(X))``.
    """
    from ..encoders import BioHash

    bp = get_preset(BioHash, dataset)
    return BioHash(k=k, random_state=seed, **(bp.for_k(k) if bp else {})).fit(flat_db)


def plot_filters(enc: BioConvHash, path: str | Path, max_filters: int = 100, title: str | None = None) -> Path:
    """A PNG grid of the learned filters, one panel per kernel size (each filter scaled to its own range)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    banks = enc.filter_banks_
    n = min(int(max_filters), banks[0].shape[0])
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(1, len(banks), figsize=(4.2 * len(banks), 4.4), squeeze=False)
    for ax, bank in zip(axes[0], banks):
        F, C, K, _ = bank.shape
        pad = 1
        grid = np.ones((rows * (K + pad) + pad, cols * (K + pad) + pad, 3), np.float32)
        for i in range(n):
            f = bank[i].transpose(1, 2, 0)  # (K, K, C)
            lo, hi = f.min(), f.max()
            f = (f - lo) / (hi - lo) if hi > lo else np.zeros_like(f)
            if C == 1:
                f = np.repeat(f, 3, axis=2)
            r, c = divmod(i, cols)
            grid[pad + r * (K + pad) : pad + r * (K + pad) + K, pad + c * (K + pad) : pad + c * (K + pad) + K] = f[..., :3]
        ax.imshow(grid, interpolation="nearest")
        ax.set_title(f"K = {K}: {n} of {F} filters")
        ax.axis("off")
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def format_conv_table(result: dict[str, Any]) -> str:
    """Ours beside the paper's numbers: the main row, the k_CI ablation, the shadows, the timings."""
    from .biohash_tables import format_table

    lines = [format_table(result)]
    abl = result.get("kci_ablation")
    if abl:
        ks = abl["ks"]
        lines.append(f"Table 4 k_CI ablation — {abl['metric']} (%), ours / paper")
        lines.append(f"{'k_CI':<6}" + "".join(f"{'k=' + str(k):>16}" for k in ks))
        for c, row in abl["rows"].items():
            paper = abl["paper"].get(c, {})
            lines.append(f"{c:<6}" + "".join(
                f"{row.get(str(k), float('nan')):>7.2f} / {paper.get(str(k), float('nan')):<6.2f}" for k in ks))
    sh = result.get("shadows")
    if sh:
        lines.append(f"Shadows — {sh['metric']} (%)")
        lines += [f"  {name:<58} {v:6.2f}" for name, v in sh["rows"].items()]
    for t in result.get("filter_stage", []):
        lines.append(
            f"seed {t['seed']}: filters {t.get('filters_seconds', 0):.1f} s, database features "
            f"{t.get('features_seconds', 0):.1f} s, D = {t['n_features_pooled']}, layer per k (s): {t['layer_seconds']}"
        )
    onnx = result.get("checks", {}).get("onnx")
    if onnx:
        lines.append(
            f"ONNX vs numpy on {onnx['n_images']} database images: {onnx['identical_rows']} identical codes"
            + (f" ({onnx['rows_differing_at_ties']} of {onnx['rows_differing']} differing rows are float32 near-ties "
               "at the top-k cut)" if onnx.get("rows_differing") else "")
            + f"; ONNX ms per image by batch: {onnx['onnx_ms_per_image']}"
        )
    return "\n".join(lines)


def merge_conv_tables(paths: Sequence[str | Path]) -> dict[str, Any]:
    """Combine the JSONs of runs on different seeds (same dataset, hash lengths and hyperparameters) into one.

    Long tables run one seed per session (``--seed-list``); the merged result has the shape of a single run
    over all their seeds: means, standard deviations and per-seed values recomputed from the per-seed values,
    timings averaged over seeds, convergence as the worst seed, ablation and shadow values pooled.
    """
    docs = [json.loads(Path(p).read_text()) for p in paths]
    out = merge_tables(paths, allow_partial=False, docs=docs)
    out["filter_stage"] = [t for d in docs for t in d.get("filter_stage", [])]
    for sect in ("kci_ablation", "shadows"):
        parts = [d[sect] for d in docs if sect in d]
        if not parts:
            continue
        merged = dict(parts[0])
        if sect == "kci_ablation":
            ps: dict[str, dict[str, list[float]]] = {}
            for part in parts:
                for c, byk in part["per_seed"].items():
                    for k, v in byk.items():
                        ps.setdefault(c, {}).setdefault(k, []).extend(v)
            merged["per_seed"] = ps
            merged["rows"] = {c: {k: round(float(np.mean(v)), 2) for k, v in byk.items()} for c, byk in ps.items()}
            merged["paper"] = {c: PAPER_KCI[first_dataset(out)].get(c, {}) for c in ps}
        else:
            ps2: dict[str, list[float]] = {}
            for part in parts:
                for kk, v in part["per_seed"].items():
                    ps2.setdefault(kk, []).extend(v)
            merged["per_seed"] = ps2
            merged["rows"] = {kk: round(float(np.mean(v)), 2) for kk, v in ps2.items()}
        merged["seeds"] = [s for d in docs if sect in d for s in d["seeds"]]
        out[sect] = merged
    return out


def first_dataset(result: dict[str, Any]) -> str:
    """The dataset key of a table result (its ``"dataset"``, else from its table title)."""
    if result.get("dataset") in DATASETS:
        return str(result["dataset"])
    for ds, cfg in DATASETS.items():
        if cfg["metric"] == result.get("metric") and cfg["table"].split("(")[-1] in result.get("table", ""):
            return ds
    raise HashplugError(f"cannot tell the dataset of the table {result.get('table')!r}.")


class BioConvHashTableSuite(Suite):
    """``hashplug bench bioconvhash-mnist | bioconvhash-cifar10``: the BioConvHash table, ablation and shadows."""

    #: suite name -> dataset
    datasets = {f"bioconvhash-{ds}": ds for ds in DATASETS}
    names = tuple(datasets)
    help = ("BioConvHash table beside BioHash (BioHash paper sec. 3.4, Table 3 / Table 4's k_CI ablation, the "
            "shadows experiment)")

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        from .biohash_tables import _add_seed_flags

        suite.add_data(parser, f"{self.datasets[name].upper()} file")
        suite.add_lengths(parser, "hash lengths (active units), each a column (default 2 4 8 16 32)")
        _add_seed_flags(parser)
        parser.add_argument("--kci", type=int, nargs="*", default=None,
                            help="Table 4's k_CI ablation at these k_CI (no values: "
                                 f"{' '.join(map(str, KCI_ABLATION))})")
        parser.add_argument("--shadows", action="store_true", help="the shadows experiment (sec. 3.4)")
        parser.add_argument("--shadow-strengths", type=float, nargs="+", default=None,
                            help="strengths of the shadow ramp with --shadows (default 0.75)")
        parser.add_argument("--filters-png", default=None, help="write a grid of the learned filters to this PNG")
        parser.add_argument("--onnx-check", type=int, default=10_000,
                            help="database images encoded by numpy and ONNX on the first seed (0: skip)")
        suite.add_hp(parser, "BioConvHash parameters over its preset for the dataset")
        suite.add_epochs(parser)
        suite.add_max_rows(parser, "a stratified subset of N images before the split (smoke runs; not the paper "
                                 "protocol)")
        parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                            help="combine these result JSONs of runs on other seeds (each finished, same "
                                 "setting) into --out (no training)")
        suite.add_out(parser)

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        return run_conv_table(
            self.datasets[name],
            args.data,
            ks=suite.lengths_of(args),
            seeds=list(args.seed_list) if getattr(args, "seed_list", None) else args.seeds,
            kcis=None if args.kci is None else (list(args.kci) or list(KCI_ABLATION)),
            shadows=bool(args.shadows),
            shadow_strengths=tuple(args.shadow_strengths) if getattr(args, "shadow_strengths", None) else (0.75,),
            out=args.out,
            hp=json.loads(args.hp) if args.hp else None,
            epochs=args.epochs,
            limit=suite.max_rows_of(args),
            filters_png=args.filters_png,
            onnx_check=int(args.onnx_check),
            report_seeds=sorted(set(range(args.seeds)) | set(getattr(args, "seed_list", None) or ())),
        )

    def merge(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        dataset = self.datasets[name]
        res = merge_conv_tables(args.merge)
        if first_dataset(res) != dataset:
            raise HashplugError(f"the merged runs are {first_dataset(res)} tables, not {dataset}.")
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(res, indent=2))
        return res

    def print(self, name: str, result: dict[str, Any], args: argparse.Namespace) -> None:
        print(format_conv_table(result))
        if not getattr(args, "merge", None):
            print(f"total {result['total_seconds']} s" + (f"; wrote {args.out}" if args.out else ""))


CONV_TABLE = register_suite(BioConvHashTableSuite())


def bench_bioconvhash(args: argparse.Namespace) -> int:
    """CLI entry: ``hashplug bench bioconvhash-mnist|bioconvhash-cifar10`` (:class:`BioConvHashTableSuite`)."""
    return CONV_TABLE.main(args.suite, args)
