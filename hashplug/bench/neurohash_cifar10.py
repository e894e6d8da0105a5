"""``hashplug bench neurohash-cifar10``: NeuroHash on CIFAR-10, one object per image (the paper's Table I
CIFAR-10 row), against ITQ, LSH and PCAHash on the same backbone features, on the fair protocol.

The paper's backbone (DINOv2 ViT-g/14) cannot be had offline. Here:

* **backbone**: the small CNN of :mod:`hashplug.train.digit_cnn` with colour input (``in_channels=3``),
  trained offline on 90 % of each class of CIFAR-10's *training* images (45,000; a seeded per-class draw:
  the data file is sorted by label, so a cut by position would hold out one class) and on nothing else (its
  test accuracy is in the JSON); its pooled
  last feature map is the image feature. One backbone (``--backbone-seed``) serves every seed; the seeds vary
  NeuroHash (k-means pseudo-labels, HDC encoder, hyperplanes) and the baselines' random draws.
* **one object per image**: the detector returns the whole image, at position (0.5, 0.5), so NeuroHash's
  inputs are the global feature and one object feature equal to it (the paper's CIFAR-10 setting).
* **test**: 1,000 queries (100 per class) and the other 9,000 test images as the database; the hashing is
  trained, without labels, on the database. Relevance: same class; mAP@1000, tie-aware.
* **validation**: 500 queries (50 per class) and 4,500 database images from the other 10 % of each class
  of the training images, which the backbone never saw (a split holding one class is refused:
  :func:`hashplug.bench.protocol.check_split_labels`); NeuroHash's hyperplane stage is chosen there by the
  same random search as
  the MNIST tables (:data:`hashplug.bench.neurohash.TUNE_GRID`, ``--budget`` settings at 32 bits).

Rows, each ``{"16", "32", "64"}`` (mean over seeds, with ``std`` and ``per_seed``): ``full``, ``random``,
``itq_raw``, ``lsh_raw`` (the paper's "naive backbone + LSH"), ``itq_hv``, ``pca_hv``, ``float_raw``,
``float_hv``, ``chance``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import suite
from .common import environment, rounded, write_json
from .neurohash import (
    DEFAULT_BUDGET,
    TUNE_GRID,
    _Hashed,
    _put,
    _seed_list,
    _stage2_params,
    reference_distances,
    seeds_of,
)
from .protocol import (
    TuningBudget,
    chance_map,
    check_no_overlap,
    check_split_labels,
    overlap_report,
    rows_digest,
    seed_summary,
    stratified_rows,
)
from .suite import Suite, register_suite

__all__ = ["run_cifar10", "cifar10_inputs"]

#: Share of each class of CIFAR-10's training images the backbone trains on (45,000 of 50,000); the rest are
#: the validation split.
BACKBONE_SHARE = 0.9


def cifar10_inputs(F: np.ndarray) -> dict[str, np.ndarray]:
    """NeuroHash's named inputs for images with one object each, the whole image: the global feature, one
    object feature equal to it, at the centre (0.5, 0.5)."""
    n = F.shape[0]
    return {"global_features": F, "object_features": F[:, None, :].copy(),
            "object_positions": np.full((n, 1, 2), 0.5, np.float32), "object_mask": np.ones((n, 1), np.float32)}


def _split(y: np.ndarray, per_class: int, n_db: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` queries of each class and ``n_db`` database rows (indices into ``y``), disjoint."""
    from ..data.protocols import per_class_split

    q, rest = per_class_split(y, per_class, seed)
    db = np.sort(np.random.default_rng(seed).permutation(rest)[:n_db])
    return q, db


def _load(data: str | None, verbose: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Every CIFAR-10 image (training then test), labels, and how many are training images."""
    from ..data.cifar10 import load_cifar10
    from ..data.registry import default_data_path

    path = default_data_path("cifar10") if data is None else data
    with np.load(path) as z:
        n_file_train = int(z["y_train"].shape[0])
    X, y = load_cifar10(path, progress=verbose)
    return X, np.asarray(y, dtype=np.int64), n_file_train


def _backbone(X: np.ndarray, y: np.ndarray, n_file_train: int, epochs: int, seed: int, rows: np.ndarray,
              verbose: bool) -> tuple[dict[str, Any], np.ndarray]:
    """The colour CNN trained on the CIFAR-10 training images ``rows``: its info and every image's features."""
    from ..train.digit_cnn import image_features, train_digit_cnn
    from ..validation import HashplugError

    missing = np.setdiff1d(np.unique(y[:n_file_train]), np.unique(y[rows]))
    if missing.size:
        raise HashplugError(f"the backbone's training images hold no image of class(es) {missing.tolist()}.")
    t0 = time.perf_counter()
    net, info = train_digit_cnn(X[rows], y[rows], channels=3, width=128, epochs=epochs, random_state=seed,
                                X_test=X[n_file_train:], y_test=y[n_file_train:], verbose=verbose)
    counts = np.bincount(y[rows])
    info.update({"train_images": f"{rows.size} CIFAR-10 training images, {counts.min()}-{counts.max()} per class "
                                 f"(a seeded per-class draw, seed {seed})",
                 "train_rows_sha256": rows_digest(rows), "seconds": round(time.perf_counter() - t0, 1),
                 "architecture": "digit_cnn with in_channels=3, width=128", "epochs": epochs, "seed": seed})
    return info, image_features(net, X)


def _data(F: np.ndarray, y: np.ndarray, q: np.ndarray, db: np.ndarray) -> dict[str, Any]:
    return {"q": {"inputs": cifar10_inputs(F[q]), "labels": None, "y": y[q], "F": F[q]},
            "db": {"inputs": cifar10_inputs(F[db]), "labels": None, "y": y[db], "F": F[db]}}


def _splits(y: np.ndarray, val_rows: np.ndarray, test_rows: np.ndarray, backbone_rows: np.ndarray,
            per_class_v: int, per_class_t: int, seed_ids: Sequence[int], backbone_seed: int
            ) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    """The validation queries and database (per class, from ``val_rows``), every seed's test split (per class,
    from ``test_rows``) and their overlap report; a split of one class or any overlap is an error."""
    vq, vdb = _split(y[val_rows], per_class_v, len(val_rows) - 10 * per_class_v, backbone_seed)
    vq, vdb = val_rows[vq], val_rows[vdb]
    check_split_labels(y[vq], y[vdb], "validation")
    tests = {str(s): _split(y[test_rows], per_class_t, len(test_rows) - 10 * per_class_t, s) for s in seed_ids}
    tests = {s: (test_rows[q], test_rows[db]) for s, (q, db) in tests.items()}
    for s, (q, db) in tests.items():
        check_split_labels(y[q], y[db], f"seed {s} test")
    overlap = overlap_report({"queries": vq, "database": vdb, "backbone": backbone_rows},
                             {s: {"queries": q, "database": db} for s, (q, db) in tests.items()})
    check_no_overlap(overlap)
    return vq, vdb, tests, overlap


def _score(D: np.ndarray, d: dict[str, Any], K: int) -> float:
    from ..metrics import mean_average_precision

    return float(mean_average_precision(D, d["q"]["y"], d["db"]["y"], limit=min(K, D.shape[1]), tie_aware=True))


def _stage1(d: dict[str, Any], hp: dict[str, Any], seed: int, verbose: bool) -> Any:
    from ..encoders.neurohash import NeuroHash

    return NeuroHash(k=16, random_state=seed, verbose=verbose, train_hyperplanes=False, **hp).fit(d["db"]["inputs"])


def _rows(d: dict[str, Any], hp: dict[str, Any], stage2: dict[str, Any], bits: Sequence[int], K: int, seed: int,
          per_seed: dict[str, dict[str, list[float]]], verbose: bool) -> None:
    """One seed: NeuroHash full and random, and every reference row, appended to ``per_seed``."""
    hashed = _Hashed(_stage1(d, hp, seed, verbose), d)
    for name, params in (("full", stage2), ("random", {**stage2, "train_hyperplanes": False, "init": "gaussian"})):
        for L in bits:
            _put(per_seed, name, L, bits, _score(hashed.distances(L, params)[0], d, K))
    hashed.check_codes()
    for row, L, D in reference_distances(d["q"]["F"], d["db"]["F"], hashed.Hq, hashed.Hdb, bits, seed,
                                         hv_center=hashed.enc.H_mean_):
        _put(per_seed, row, L, bits, _score(D, d, K))
    _put(per_seed, "chance", None, bits, chance_map(d["q"]["y"], d["db"]["y"], K))


def _tune(d: dict[str, Any], hp: dict[str, Any], grid: dict[str, list[Any]], budget: int | None, bits: int, K: int,
          seed: int, verbose: bool) -> dict[str, Any]:
    """The random search of NeuroHash's hyperplane stage on the validation images."""
    from tqdm.auto import tqdm

    tb = TuningBudget({"NeuroHash": grid, "itq_raw": {}, "lsh_raw": {}, "itq_hv": {}, "pca_hv": {}}, budget=budget,
                      seed=seed)
    hashed = _Hashed(_stage1(d, hp, seed, verbose), d)
    results = []
    for setting in tqdm(tb.settings["NeuroHash"], desc="neurohash-cifar10 validation", disable=not verbose):
        D, fit_s = hashed.distances(bits, _stage2_params(setting))
        results.append({"params": setting, "val_map": rounded(_score(D, d, K), 4), "fit_s": round(fit_s, 1)})
    refs = {row: rounded(_score(D, d, K), 4) for row, L, D in reference_distances(
        d["q"]["F"], d["db"]["F"], hashed.Hq, hashed.Hdb, [bits], seed, hv_center=hashed.enc.H_mean_)}
    ranked = sorted(results, key=lambda r: -r["val_map"])
    return {"chosen": ranked[0]["params"], "results": ranked, "references": refs, "bits": bits,
            "tuning": tb.to_json()}


def run_cifar10(
    data: str | None,
    *,
    bits: Sequence[int] = (16, 32, 64),
    K: int = 1000,
    hp: dict[str, Any] | None = None,
    seeds: int | Sequence[int] = 3,
    budget: int | None = DEFAULT_BUDGET,
    backbone_epochs: int = 8,
    backbone_seed: int = 0,
    max_rows: int | None = None,
    out: str | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """NeuroHash vs ITQ / LSH / PCAHash / float on one CIFAR-10 backbone's features; see the module docstring.
    ``max_rows`` (smoke runs) uses that many test images (and a tenth as many queries) and a backbone trained
    on 5 x ``max_rows`` training images."""
    t_all = time.perf_counter()
    seed_ids = _seed_list(seeds)
    bits = [int(b) for b in bits]
    hp = {"D": 10_000, "w": 1.0, **(hp or {})}
    X, y, n_file = _load(data, verbose)
    backbone_rows, val_rows = stratified_rows(y[:n_file], BACKBONE_SHARE, backbone_seed)
    if max_rows is not None:  # smoke runs: a smaller backbone set, still drawn from every class
        sub, _ = stratified_rows(y[backbone_rows], min(0.99, 5 * int(max_rows) / backbone_rows.size), backbone_seed)
        backbone_rows = backbone_rows[sub]
    info, F = _backbone(X, y, n_file, backbone_epochs, backbone_seed, backbone_rows, verbose)
    del X
    test_rows = np.arange(n_file, len(y)) if max_rows is None else np.arange(n_file, min(len(y), n_file + int(max_rows)))
    per_class_t, per_class_v = (100, 50) if max_rows is None else (max(1, len(test_rows) // 100), 1)
    vq, vdb, tests, overlap = _splits(y, val_rows, test_rows, backbone_rows, per_class_v, per_class_t, seed_ids,
                                      backbone_seed)
    t0 = time.perf_counter()
    tune = _tune(_data(F, y, vq, vdb), hp, dict(TUNE_GRID), budget, 32 if 32 in bits else bits[0], K, seed_ids[0],
                 verbose)
    t_tune = time.perf_counter() - t0
    stage2 = _stage2_params(tune["chosen"])
    per_seed: dict[str, dict[str, list[float]]] = {}
    seconds = {}
    for s in seed_ids:
        t0 = time.perf_counter()
        _rows(_data(F, y, *tests[str(s)]), hp, stage2, bits, K, s, per_seed, verbose)
        seconds[str(s)] = round(time.perf_counter() - t0, 1)
    summary = seed_summary(per_seed)
    rows = summary["rows"]
    res = {
        "suite": "neurohash-cifar10",
        "table": "NeuroHash paper, Table I's CIFAR-10 row (one object per image), on a small CNN's features, "
                 "fair protocol",
        "metric": f"mAP@{K} (same class), tie-aware; mean over seeds {seed_ids}",
        "seeds": seed_ids,
        **summary,
        "full_minus_best_reference": {
            b: rounded(rows["full"][b] - max(rows[r][b] for r in ("itq_raw", "itq_hv", "lsh_raw", "pca_hv")), 4)
            for b in rows["full"]},
        "chosen": tune["chosen"],
        "tuning": tune,
        "hyperparameters": {**hp, "stage2": stage2},
        "protocol": {
            "backbone": info,
            "test": f"{10 * per_class_t} queries ({per_class_t} per class) and {len(test_rows) - 10 * per_class_t} "
                    "database images from the CIFAR-10 test images, drawn per seed",
            "validation": f"{len(vq)} queries ({per_class_v} per class) and {len(vdb)} database images from the "
                          f"{val_rows.size} CIFAR-10 training images outside the backbone's ({1 - BACKBONE_SHARE:.0%} "
                          "of each class; the backbone never saw them)",
            "validation_rows_sha256": rows_digest(val_rows),
            "validation_overlap": overlap,
            "objects": "one per image: the whole image at (0.5, 0.5)",
            "training": "NeuroHash and the baselines fit on the database images, without labels (k-means "
                        "pseudo-labels)",
            "K": K,
        },
        "timings": {"backbone_s": info["seconds"], "tuning_s": round(t_tune, 1), "seeds_s": seconds,
                    "total_s": round(time.perf_counter() - t_all, 1)},
        "environment": environment(),
    }
    write_json(res, out)
    return res


class NeuroHashCifar10Suite(Suite):
    """``hashplug bench neurohash-cifar10``: NeuroHash on CIFAR-10, one object per image."""

    names = ("neurohash-cifar10",)
    help = ("NeuroHash paper Table I, CIFAR-10 row: NeuroHash vs ITQ / LSH / PCAHash / float on a small CNN's "
            "features (one object per image), mAP@1000, >= 3 seeds, tuned on validation")

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        import json

        suite.add_data(parser, "CIFAR-10 file")
        suite.add_lengths(parser, "code lengths in bits, each a column (default 16 32 64)")
        parser.add_argument("--seeds", type=int, nargs="+", default=[3], help="a count (3: seeds 0, 1, 2) or a list")
        parser.add_argument("--budget", type=int, default=DEFAULT_BUDGET,
                            help=f"validation settings drawn from the tuning grid (default {DEFAULT_BUDGET})")
        parser.add_argument("--backbone-epochs", type=int, default=8, help="epochs of the CNN backbone (default 8)")
        parser.add_argument("--backbone-seed", type=int, default=0, help="seed of the CNN backbone (default 0)")
        suite.add_max_rows(parser, "smoke run: N test images, a backbone trained on 5 N training images")
        suite.add_hp(parser, "NeuroHash stage-1 parameters, e.g. " + json.dumps({"D": 10000}))
        suite.add_out(parser)

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        import json

        return run_cifar10(args.data, bits=suite.lengths_of(args) or (16, 32, 64), seeds=seeds_of(args),
                           budget=args.budget, backbone_epochs=args.backbone_epochs, backbone_seed=args.backbone_seed,
                           max_rows=suite.max_rows_of(args), hp=json.loads(args.hp) if args.hp else None,
                           out=args.out)

    def print(self, name: str, result: dict[str, Any], args: argparse.Namespace) -> None:
        from .neurohash import _table

        _table(f"{result['table']}: {result['metric']} (%)", result["rows"], result["std"])
        print(f"backbone test accuracy {result['protocol']['backbone'].get('test_accuracy')}; chosen on validation: "
              f"{result['chosen']}; full minus the best hashing reference: {result['full_minus_best_reference']}")


register_suite(NeuroHashCifar10Suite)
