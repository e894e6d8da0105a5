"""``hashplug bench ag-news``: retrieval quality on AG News sentence embeddings.

Same-label precision@10 and recall@10 of the exact cosine neighbours for float32, sign codes, ITQ, LSH and
BioHash k-hot codes (hyperparameters chosen on a validation split), with and without float rescoring of 10x
Hamming candidates, against storage per row.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..codes import pack_bits
from . import suite
from .common import FLOAT_BITS, environment, format_rows, rounded, write_json
from .suite import Suite, register_suite

__all__ = ["AG_NEWS_DENSE", "AG_NEWS_KHOT", "AG_NEWS_BIOHASH", "AG_NEWS_GRID", "run_ag_news", "format_ag_news",
           "bench_ag_news"]


def __getattr__(name: str) -> Any:
    # AG_NEWS_BIOHASH_HP, the 0.1.0 name of the k-hot encoder's "ag_news" preset
    if name == "AG_NEWS_BIOHASH_HP":
        from ..encoders import get_preset

        return dict(get_preset(AG_NEWS_KHOT, "ag_news").params)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The suite is an experiment definition (like the paper tables' data): which registered encoders it runs at
# which operating points. What it does differently for them comes from their tags and presets.

#: Dense code lengths of the AG News suite: ``{registry name: bits}``.
AG_NEWS_DENSE: dict[str, tuple[int, ...]] = {"itq": (64, 128, 192, 256), "lsh": (192, 384)}

#: The k-hot encoder of the suite (registry name), run at every (m, k) of :data:`AG_NEWS_BIOHASH` and every
#: ``center``, its hyperparameters chosen per size on validation starting from its ``"ag_news"`` preset.
AG_NEWS_KHOT = "biohash"

#: BioHash (m, k) pairs of the AG News suite (storage k * ceil(log2 m) <= 192 bits), each with center
#: True and False.
AG_NEWS_BIOHASH: tuple[tuple[int, int], ...] = ((500, 16), (1000, 16), (2000, 16), (4000, 12))

#: Default validation grid (key -> candidate values) of the AG News BioHash tuning, per (m, k, center).
#: A preliminary search on the same validation split (m=1000, k=16, center=False, 30 epochs; val P@10) gave
#: init_scale 0.05 -> 0.753, 0.2 -> 0.818, 0.3 -> 0.824, 0.5 -> 0.794 (lr 0.05 instead of 0.03: no gain);
#: larger m needs a smaller initial scale and more epochs (m=4000, k=12: 0.1 -> 0.805, 0.1 and 60 epochs ->
#: 0.816, 0.15 and 60 epochs -> 0.792), hence this grid.
AG_NEWS_GRID: dict[str, list[Any]] = {"init_scale": [0.1, 0.15, 0.3], "epochs": [30, 60]}



def _exact_cosine_topk(Xq: np.ndarray, Xdb: np.ndarray, R: int) -> np.ndarray:
    """Indices (n_q, R) of the R most cosine-similar database rows; ties go to the lower index."""

    def unit(A: np.ndarray) -> np.ndarray:
        A = np.asarray(A, dtype=np.float32)
        return A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), np.float32(1e-12))

    S = unit(Xq) @ unit(Xdb).T
    return np.argsort(-S, axis=1, kind="stable")[:, :R].astype(np.int64)


def _rescore(cand: np.ndarray, Xq: np.ndarray, Xdb: np.ndarray, R: int) -> np.ndarray:
    """Re-rank candidate indices (n_q, C) by exact cosine similarity on the floats; keep the top R."""

    def unit(A: np.ndarray) -> np.ndarray:
        return A / np.maximum(np.linalg.norm(A, axis=-1, keepdims=True), np.float32(1e-12))

    sims = np.einsum("qd,qcd->qc", unit(Xq), unit(Xdb[cand]))
    order = np.argsort(-sims, axis=1, kind="stable")[:, :R]
    return np.take_along_axis(cand, order, axis=1)


def _same_label(idx: np.ndarray, yq: np.ndarray, ydb: np.ndarray) -> float:
    return float(np.mean(ydb[idx] == yq[:, None]))


def _std_err(v: np.ndarray) -> float:
    """Standard error of the mean of per-query values (queries treated as independent)."""
    v = np.asarray(v, dtype=np.float64)
    return float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0


def _per_query_recall(idx: np.ndarray, true_idx: np.ndarray) -> np.ndarray:
    """|idx_q & true_q| / R for every query q."""
    return np.array([np.intersect1d(a, b).size for a, b in zip(idx, true_idx)]) / true_idx.shape[1]


def _eval_codes(
    cq: np.ndarray,
    cdb: np.ndarray,
    Xq: np.ndarray,
    Xdb: np.ndarray,
    yq: np.ndarray,
    ydb: np.ndarray,
    true_idx: np.ndarray,
    R: int = 10,
    overfetch: int = 10,
) -> dict[str, float]:
    """Quality of packed codes: P@R and recall@R by Hamming, and after float rescoring of overfetch*R."""
    from ..hamming import hamming_distances, hamming_search
    from ..metrics import precision_at_r, recall_at_r

    idx, _ = hamming_search(cq, cdb, R)
    D = hamming_distances(cq, cdb)
    C = min(overfetch * R, cdb.shape[0])
    cand, _ = hamming_search(cq, cdb, C)
    ridx = _rescore(cand, Xq, Xdb, R)
    return {
        "p10": _same_label(idx, yq, ydb),
        "p10_se": _std_err(np.mean(ydb[idx] == yq[:, None], axis=1)),
        "p10_tie_aware": precision_at_r(D, yq, ydb, R, tie_aware=True),
        "recall10": recall_at_r(idx, true_idx, R),
        "p10_rescored": _same_label(ridx, yq, ydb),
        "recall10_rescored": recall_at_r(ridx, true_idx, R),
        "recall10_rescored_se": _std_err(_per_query_recall(ridx, true_idx)),
    }


def _norm_stats(enc: Any) -> dict[str, float]:
    """Convergence of a plasticity encoder: its row p-norms (1 at the fixed point of the rule)."""
    rn = enc.row_norms_.astype(np.float64)
    return {
        "min": round(float(rn.min()), 3),
        "median": round(float(np.median(rn)), 3),
        "max": round(float(rn.max()), 3),
        "frac_within_5pct_of_1": round(float(np.mean(np.abs(rn - 1.0) <= 0.05)), 3),
    }


def _grid_points(grid: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    import itertools

    keys = sorted(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(list(grid[k]) for k in keys))]


def _fit_khot(
    X: np.ndarray, m: int, k: int, center: bool, hp: dict[str, Any], seed: int
) -> tuple[Any, float]:
    from ..encoders import get_encoder, get_tags

    on_cpu = {"device": "cpu"} if get_tags(AG_NEWS_KHOT).iterative else {}
    enc = get_encoder(AG_NEWS_KHOT, k=k, m=m, center=center, random_state=seed, **on_cpu, **hp)
    t0 = time.perf_counter()
    enc.fit(X)
    return enc, time.perf_counter() - t0


def run_ag_news(
    data: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    methods: Sequence[str] | None = None,
    dense: dict[str, Sequence[int]] | None = None,
    biohash: Sequence[tuple[int, int]] | None = None,
    centers: Sequence[bool] = (False, True),
    hp: dict[str, Any] | None = None,
    grid: dict[str, Sequence[Any]] | None = None,
    epochs: int | None = None,
    limit: int | None = None,
    val_per_class: int = 100,
    R: int = 10,
    overfetch: int = 10,
    progress: bool = True,
) -> dict[str, Any]:
    """AG News retrieval quality of float32, sign codes, ITQ, LSH and BioHash, against storage per row.

    Protocol (:func:`hashplug.data.ag_news_protocol`): 100 queries per class (400), the other 7,200 rows are
    the database and the training set of every learned method. Ground truth: the true top-R database rows by
    float cosine similarity. Metrics per method: same-label precision@R of its top R by Hamming distance
    (ties to the lower index, :func:`hashplug.hamming.hamming_search`; also the tie-aware expectation),
    recall@R of the true cosine top R, and both again after rescoring the top ``overfetch * R`` Hamming
    candidates by exact cosine on the stored floats.

    BioHash hyperparameters are chosen per (m, k, center) by same-label P@R on a validation split cut from
    the database (:func:`hashplug.data.validation_split`), never on the queries; then the encoder is
    retrained on the whole database.

    Parameters
    ----------
    data : path-like or None
        ``ag_news_test_minilm.npz`` (default :func:`hashplug.data.default_data_path` ``("ag_news")``).
    seed : int
        Seed of the query draw, of the validation draw and of the encoders.
    methods : sequence of str or None
        Families to run, from ``"float32", "sign", "itq", "lsh", "biohash"`` (default all).
    dense : dict or None
        Code lengths per dense family (default :data:`AG_NEWS_DENSE`).
    biohash : sequence of (m, k) or None
        BioHash sizes (default :data:`AG_NEWS_BIOHASH`).
    centers : sequence of bool
        BioHash ``center`` values, each run with every (m, k).
    hp : dict or None
        BioHash parameters overriding its ``"ag_news"`` preset.
    grid : dict or None
        Validation grid (key -> list of values) on top of ``hp`` (default :data:`AG_NEWS_GRID`); a grid of
        one point skips the validation runs.
    epochs : int or None
        Override BioHash epochs (also removes ``epochs`` from the grid).
    limit : int or None
        Keep only the first ``limit`` database rows (smoke runs; not the protocol).
    val_per_class : int
        Validation queries per class.
    R, overfetch : int
        Neighbours evaluated, and the candidate multiplier of the rescoring.
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    dict
        ``rows`` (one per method and size) plus the reference points, chosen hyperparameters and settings.
    """
    from ..data import ag_news_protocol, default_data_path, load_ag_news
    from ..encoders import get_preset

    t_start = time.perf_counter()
    path = Path(data) if data else default_data_path("ag_news")
    X, y = load_ag_news(path)
    split = ag_news_protocol(X, y, seed)
    Xdb, ydb = split.Xdb, split.ydb
    if limit is not None:
        Xdb, ydb = Xdb[: int(limit)], ydb[: int(limit)]
    run = _AgNewsRun(split.Xq, split.yq, Xdb, ydb, R, overfetch)
    fams = [m.lower() for m in (methods or ["float32", "sign", *AG_NEWS_DENSE, AG_NEWS_KHOT])]
    dense = {k.lower(): tuple(v) for k, v in (dense or AG_NEWS_DENSE).items()}
    bio_sizes = [tuple(int(v) for v in mk) for mk in (biohash or AG_NEWS_BIOHASH)]
    base_hp = {**get_preset(AG_NEWS_KHOT, "ag_news").params, **(hp or {})}
    grid = dict(AG_NEWS_GRID if grid is None else grid)
    if epochs is not None:
        base_hp["epochs"] = int(epochs)
        grid.pop("epochs", None)

    _reference_rows(run, fams)
    _dense_rows(run, fams, dense, seed, progress)
    tuning: list[dict[str, Any]] = []
    if AG_NEWS_KHOT in fams and bio_sizes:
        # at most a quarter of the smallest class (only binds on small smoke databases)
        val_per_class = int(min(val_per_class, max(1, np.bincount(ydb).min() // 4)))
        tuning = _khot_rows(run, bio_sizes, centers, base_hp, _grid_points(grid), val_per_class, seed, progress)
    settings = {
        "R": R,
        "overfetch": overfetch,
        "dense": {k: list(v) for k, v in dense.items()},
        "biohash_sizes": [list(mk) for mk in bio_sizes],
        "centers": list(centers),
        "biohash_base_hp": base_hp,
        "grid": grid,
        "val_per_class": val_per_class,
        "tuning_metric": f"validation same-label P@{R} (Hamming, no rescoring)",
    }
    return _ag_news_result(run, path, seed, limit, settings, tuning, t_start)


class _AgNewsRun:
    """One AG News run's queries, database and ground truth, and the table rows collected so far."""

    def __init__(self, Xq: np.ndarray, yq: np.ndarray, Xdb: np.ndarray, ydb: np.ndarray, R: int,
                 overfetch: int) -> None:
        self.Xq, self.yq, self.Xdb, self.ydb, self.R, self.overfetch = Xq, yq, Xdb, ydb, R, overfetch
        self.d = Xq.shape[1]
        self.float_bits = self.d * FLOAT_BITS
        self.true_idx = _exact_cosine_topk(Xq, Xdb, R)
        self.rows: list[dict[str, Any]] = []

    def add_row(self, method: str, config: str, kind: str, m: int, k: int, bits: int, q: dict[str, float],
                **extra: Any) -> None:
        self.rows.append(
            {
                "method": method,
                "config": config,
                "code_kind": kind,
                "m": int(m),
                "k": int(k),
                "storage_bits": int(bits),
                "storage_vs_float32": round(bits / self.float_bits, 5),
                "compression_vs_float32": round(self.float_bits / bits, 1),
                **{key: rounded(v) for key, v in q.items()},
                **extra,
            }
        )

    def code_row(self, method: str, config: str, cq: np.ndarray, cdb: np.ndarray, kind: str, m: int, k: int,
                 **extra: Any) -> dict[str, float]:
        from ..codes import storage_bits

        q = _eval_codes(cq, cdb, self.Xq, self.Xdb, self.yq, self.ydb, self.true_idx, self.R, self.overfetch)
        self.add_row(method, config, kind, m, k, storage_bits(m, k, kind), q, **extra)
        return q


def _reference_rows(run: _AgNewsRun, fams: Sequence[str]) -> None:
    """The float32 row (exact cosine) and the sign-code row, where asked for."""
    d, Xq, yq, Xdb, ydb, true_idx = run.d, run.Xq, run.yq, run.Xdb, run.ydb, run.true_idx
    if "float32" in fams:
        q = {
            "p10": _same_label(true_idx, yq, ydb),
            "p10_se": _std_err(np.mean(ydb[true_idx] == yq[:, None], axis=1)),
            "p10_tie_aware": None,
            "recall10": 1.0,
            "p10_rescored": None,
            "recall10_rescored": None,
            "recall10_rescored_se": None,
        }
        run.add_row("float32", f"exact cosine, {d} x float32", "float", d, d, run.float_bits, q)
    if "sign" in fams:
        run.code_row("sign", f"x > 0, {d} bits", pack_bits(Xq > 0), pack_bits(Xdb > 0), "dense", d, d)


def _dense_rows(run: _AgNewsRun, fams: Sequence[str], dense: dict[str, tuple[int, ...]], seed: int,
                progress: bool) -> None:
    """One row per dense family in ``fams`` and code length."""
    from tqdm.auto import tqdm

    from ..encoders import get_encoder, get_tags

    for fam in dense:
        if fam not in fams:
            continue
        name = get_tags(fam).display_name
        for bits in tqdm(dense.get(fam, ()), desc=fam, disable=not progress, leave=False):
            enc = get_encoder(fam, k=int(bits), random_state=seed)
            t0 = time.perf_counter()
            enc.fit(run.Xdb)
            fit_s = time.perf_counter() - t0
            run.code_row(name, f"{bits} bits", enc.encode(run.Xq), enc.encode(run.Xdb), "dense", enc.m_, enc.k_,
                         fit_seconds=round(fit_s, 2))


def _khot_rows(run: _AgNewsRun, bio_sizes: Sequence[tuple[int, ...]], centers: Sequence[bool],
               base_hp: dict[str, Any], points: list[dict[str, Any]], val_per_class: int, seed: int,
               progress: bool) -> list[dict[str, Any]]:
    """The k-hot encoder's rows, one per (m, k, center), its setting chosen on validation; returns the tuning."""
    from tqdm.auto import tqdm

    from ..data import validation_split
    from ..encoders import get_tags

    val = validation_split(run.Xdb, run.ydb, per_class=val_per_class, seed=seed) if len(points) > 1 else None
    tuning: list[dict[str, Any]] = []
    jobs = [(m, k, c) for (m, k) in bio_sizes for c in centers]
    for m, k, center in tqdm(jobs, desc=AG_NEWS_KHOT, disable=not progress):
        chosen = {**base_hp, **points[0]}
        if val is not None:
            trials = _khot_trials(val, m, k, center, base_hp, points, run.R, run.overfetch, seed)
            best = max(range(len(trials)), key=lambda i: (trials[i]["val_p10"], -i))
            chosen = {**base_hp, **points[best]}
            tuning.append({"m": m, "k": k, "center": center, "chosen": points[best], "trials": trials})
        enc, fit_s = _fit_khot(run.Xdb, m, k, center, chosen, seed)
        run.code_row(
            get_tags(AG_NEWS_KHOT).display_name,
            f"m={m} k={k} center={center}",
            enc.encode(run.Xq),
            enc.encode(run.Xdb),
            "khot",
            m,
            k,
            center=center,
            hp=chosen,
            row_norms=_norm_stats(enc),
            units_used=int(np.unique(enc.encode(run.Xdb, layout="indices")).size),
            fit_seconds=round(fit_s, 1),
        )
    return tuning


def _khot_trials(val: Any, m: int, k: int, center: bool, base_hp: dict[str, Any], points: list[dict[str, Any]],
                 R: int, overfetch: int, seed: int) -> list[dict[str, Any]]:
    """Every grid point of the k-hot encoder at (m, k, center), scored on the validation split."""
    vtrue = _exact_cosine_topk(val.Xq, val.Xdb, R)
    trials = []
    for pt in points:
        enc, fit_s = _fit_khot(val.Xdb, m, k, center, {**base_hp, **pt}, seed)
        vq = _eval_codes(enc.encode(val.Xq), enc.encode(val.Xdb), val.Xq, val.Xdb, val.yq, val.ydb, vtrue, R,
                         overfetch)
        trials.append(
            {
                "params": pt,
                "val_p10": round(vq["p10"], 4),
                "val_recall10_rescored": round(vq["recall10_rescored"], 4),
                "row_norms": _norm_stats(enc),
                "units_used": int(np.unique(enc.encode(val.Xdb, layout="indices")).size),
                "fit_seconds": round(fit_s, 1),
            }
        )
    return trials


def _ag_news_result(run: _AgNewsRun, path: Path, seed: int, limit: int | None, settings: dict[str, Any],
                    tuning: list[dict[str, Any]], t_start: float) -> dict[str, Any]:
    """The suite's JSON."""
    R, overfetch = run.R, run.overfetch
    return {
        "suite": "ag-news",
        "metric": f"same-label precision@{R} and recall@{R} of the exact cosine top {R}; 'rescored': top "
        f"{overfetch * R} by Hamming re-ranked by exact cosine on the stored floats",
        "data": str(path),
        "protocol": {
            "name": "ag_news",
            "seed": seed,
            "n_queries": int(run.Xq.shape[0]),
            "n_db": int(run.Xdb.shape[0]),
            "dim": int(run.d),
            "limit": limit,
        },
        "settings": settings,
        "reference": {
            "note": "measured by someone else on this protocol (for comparison, not reproduced here)",
            "float32_p10": 0.819,
            "sign_p10": 0.801,
            "sign_recall10_rescored": 0.978,
            "biohash_m1000_k16_p10": 0.823,
            "biohash_m1000_k16_recall10_rescored": 0.83,
            "itq256_recall10_rescored": 0.968,
        },
        "notes": [
            "storage_bits: dense codes m bits; k-hot codes stored as k indices of ceil(log2 m) bits. Hamming "
            "search on k-hot codes runs on the m-bit packed form (distance 2 (k - overlap)).",
            "p10 ranks by Hamming with ties to the lower database index; p10_tie_aware is the expectation over "
            "random orders within tied distances (k-hot codes have only k + 1 distinct distances).",
            "recall10 of float32 is 1 by definition; float32 storage is d * 32 bits.",
        ],
        "tuning": tuning,
        "rows": run.rows,
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "environment": environment(),
    }


def format_ag_news(res: dict[str, Any]) -> str:
    """Text table of :func:`run_ag_news` results."""
    cols = [
        ("method", "method"),
        ("config", "config"),
        ("storage_bits", "bits/row"),
        ("compression_vs_float32", "x smaller"),
        ("p10", "P@10"),
        ("p10_se", "+-se"),
        ("p10_tie_aware", "P@10 tie-aware"),
        ("recall10", "R@10"),
        ("p10_rescored", "P@10 rescored"),
        ("recall10_rescored", "R@10 rescored"),
    ]
    rows = [{**r, "compression_vs_float32": f"{r['compression_vs_float32']:.1f}"} for r in res["rows"]]
    return format_rows(rows, cols, nd=3)


class AgNewsSuite(Suite):
    """``hashplug bench ag-news``: AG News retrieval quality of float32, sign, ITQ, LSH and BioHash codes."""

    names = ("ag-news",)
    help = "AG News retrieval quality (P@10, recall@10, rescored) of float32, sign, ITQ, LSH, BioHash vs storage"
    description = help + (". The query draw is seed 0's, like the reference numbers; the table reports standard "
                          "errors over the queries.")

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        suite.add_data(parser, "AG News embeddings file (ag_news_test_minilm.npz)")
        parser.add_argument("--methods", nargs="+", default=None,
                            help="families to run, from float32 sign itq lsh biohash (default all)")
        suite.add_lengths(parser, "code lengths (bits) of the dense families, each run at all of them (default: "
                                 + "; ".join(f"{f} {' '.join(map(str, b))}" for f, b in AG_NEWS_DENSE.items()) + ")")
        suite.add_epochs(parser, "BioHash (default: its ag_news preset's)")
        suite.add_max_rows(parser, "truncate the database to N rows (smoke runs; not the reference protocol)")
        suite.add_hp(parser, 'BioHash parameters, optionally with "sizes": [[m, k], ...] and "centers": [false, true]')
        suite.add_grid(parser, "BioHash parameter -> values, chosen per (m, k, center) by same-label P@10")
        suite.add_out(parser)

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        hp = json.loads(args.hp) if getattr(args, "hp", None) else {}
        sizes = hp.pop("sizes", None)
        centers = hp.pop("centers", (False, True))
        lengths = suite.lengths_of(args)
        dense = {fam: tuple(lengths) for fam in AG_NEWS_DENSE} if lengths else None
        grid = json.loads(args.grid) if getattr(args, "grid", None) else None
        res = run_ag_news(
            args.data,
            methods=args.methods,
            dense=dense,
            biohash=sizes,
            centers=tuple(centers),
            hp=hp,
            grid=grid,
            epochs=args.epochs,
            limit=suite.max_rows_of(args),
        )
        write_json(res, args.out)
        return res

    def print(self, name: str, result: dict[str, Any], args: argparse.Namespace) -> None:
        print(format_ag_news(result))
        for t in result["tuning"]:
            print(f"tuned m={t['m']} k={t['k']} center={t['center']}: {t['chosen']}")
        print(f"total {result['total_seconds']} s" + (f"; wrote {args.out}" if args.out else ""))


AG_NEWS = register_suite(AgNewsSuite())


def bench_ag_news(args: argparse.Namespace) -> int:
    """``hashplug bench ag-news`` (:class:`AgNewsSuite`): run, print the table, write ``--out``.

    ``--methods`` picks families (float32, sign, itq, lsh, biohash); ``--k`` overrides the ITQ / LSH code
    lengths; ``--epochs`` the BioHash epochs; ``--limit`` truncates the database (smoke runs); ``--grid`` is
    a JSON validation grid for BioHash and ``--hp`` a JSON object of BioHash parameters, optionally with
    ``"sizes": [[m, k], ...]`` and ``"centers": [false, true]``. The suite uses the query draw of seed 0,
    like the reference numbers, and reports standard errors over the queries.
    """
    return AG_NEWS.main("ag-news", args)
