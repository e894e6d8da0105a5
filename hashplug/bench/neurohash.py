"""``hashplug bench neurohash-*``: the NeuroHash experiments (issue 12) on spatial MNIST scenes.

The paper's data (MS COCO, CIFAR-10) and backbones (DINOv2 ViT-g/14, Detectron2) cannot be had here. The
offline protocol, recorded in every JSON under ``"protocol"``:

* **scenes** (:func:`hashplug.data.scenes.make_scenes`): 64 x 64 canvases with 1-4 real MNIST digits at
  random positions and scales, boxes and classes recorded. Query scenes are built from MNIST test digits
  0-4,999, database scenes from test digits 5,000-9,999 (no digit image is in both); the hashing is trained
  on the database scenes (unsupervised retrieval, as the paper's retrieval set). The validation split
  (``--grid``) builds both from MNIST *training* digits instead.
* **image encoder**: the digit CNN of :mod:`hashplug.train.digit_cnn` trained on the 60,000 MNIST training
  digits (its test accuracy is in the JSON); it embeds whole scenes and object crops alike.
* **detector**: the ground-truth boxes and classes (``--hp '{"detector": "cc"}'``: connected components,
  with k-means pseudo-labels); ``--hp '{"background": "cifar10"}'`` puts a dimmed CIFAR-10 image behind
  every scene (test images behind the queries, training images behind the database).
* **relevance**: mAP@K with multi-label relevance (a database scene is relevant when it shares a digit class
  with the query), K = 1,000 of 10,000 (10 %, the paper uses 5,000 of 117k on COCO); mAP@K_r: relevant when
  an object of the query's class lies within r (normalised coordinates) of one of the query's objects.

Suites:

* ``neurohash-ablation``: Table II at 16 / 32 / 64 bits: JSON rows ``full``, ``random`` (the N(0, 1)
  hyperplanes untrained), ``no_<term>`` for each of ``mse, w, q, u, o``, each ``{"16": ..., "32": ...,
  "64": ...}`` (mAP@K); ``"baselines"``: LSH and ITQ on the raw features (global + mean object feature);
  ``"float"``: cosine on the hypervectors (what the hashing compresses).
* ``neurohash-spatial``: Table III's trend (mAP@K_r for r in 0.1..0.4 as w goes 10 -> 1 -> 0.1), and the
  conditional retrieval test: with eta = 10 on one query object against eta = 1, the share of the top 100
  that hold an object of that class within r = 0.2 of its position; a PNG grid of queries and results.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import suite
from .common import environment, rounded, write_json
from .suite import Suite, register_suite

__all__ = ["build_scene_data", "run_ablation", "run_spatial", "bench_neurohash", "TERMS"]

TERMS: tuple[str, ...] = ("mse", "w", "q", "u", "o")

#: Defaults of the NeuroHash fits in the benches (the paper gives D = 10,000 and nothing else; see the
#: encoder's defaults and the validation grid in the JSON).
DEFAULT_HP: dict[str, Any] = {"D": 10_000, "w": 1.0, "detector": "gt", "background": None}


# ---------------------------------------------------------------------------------------------- data
def build_scene_data(
    data: str | None,
    *,
    n_db: int = 10_000,
    n_q: int = 1_000,
    split: str = "test",
    seed: int = 0,
    detector: str = "gt",
    background: str | None = None,
    cnn_epochs: int = 3,
    cnn_train: int = 60000,
    verbose: bool = True,
) -> dict[str, Any]:
    """Scenes, their named inputs and annotations, for queries and database (see the module docstring).
    ``cnn_train`` < 60,000 trains the image encoder on fewer digits (smoke runs only)."""
    from ..data.mnist import load_mnist
    from ..data.registry import default_data_path
    from ..data.scenes import ConnectedComponentsDetector, GroundTruthDetector, make_scenes, scene_inputs
    from ..train.digit_cnn import image_features, train_digit_cnn
    from ..validation import HashplugError

    path = default_data_path("mnist") if data is None else (data if str(data).endswith(".npz") else f"{data}/mnist.npz")
    X, y = load_mnist(path)
    with np.load(path) as z:  # rows [0, n_train) are the official training digits, the rest the test digits
        n_train = int(z["x_train"].shape[0])
    n_test = X.shape[0] - n_train
    t0 = time.perf_counter()
    n_cnn = min(int(cnn_train), n_train)
    net, info = train_digit_cnn(X[:n_cnn], y[:n_cnn], epochs=cnn_epochs, random_state=seed, X_test=X[n_train:],
                                y_test=y[n_train:], verbose=verbose)
    info["train_digits"] = n_cnn
    t_cnn = time.perf_counter() - t0
    if split == "test":  # MNIST: test digits 0-4,999 for queries, 5,000-9,999 for the database
        q_src, db_src = slice(n_train, n_train + n_test // 2), slice(n_train + n_test // 2, None)
    elif split == "val":  # MNIST: training digits 0-29,999 and 30,000-59,999
        q_src, db_src = slice(0, n_train // 2), slice(n_train // 2, n_train)
    else:
        raise HashplugError(f"split must be 'test' or 'val'; got {split!r}.")
    t0 = time.perf_counter()
    bg = None
    if background == "cifar10":  # the CIFAR-10 test images behind the queries, the training images behind the rest
        from ..data.cifar10 import load_cifar10

        cx, _ = load_cifar10()
        cx = np.ascontiguousarray(cx.transpose(0, 3, 1, 2))
        bg = (cx[50000:], cx[:50000])
    elif background is not None:
        raise HashplugError(f"background must be None or 'cifar10'; got {background!r}.")
    sq = make_scenes(X[q_src], y[q_src], n_q, seed=seed * 10 + 2, background=None if bg is None else bg[0])
    sdb = make_scenes(X[db_src], y[db_src], n_db, seed=seed * 10 + 1, background=None if bg is None else bg[1])

    def enc(x: np.ndarray) -> np.ndarray:
        return image_features(net, x)

    out: dict[str, Any] = {"cnn": info, "split": split, "background": background}
    for name, sc in (("q", sq), ("db", sdb)):
        det = GroundTruthDetector(sc) if detector == "gt" else ConnectedComponentsDetector(max_objects=sc.max_objects)
        inp = scene_inputs(sc.images, enc, det, crop_size=28, pad=4)
        labels = inp.pop("object_labels")
        out[name] = {
            "inputs": inp,
            "labels": labels,  # the detector's (-1 for connected components)
            "scenes": sc,
        }
    out["seconds"] = {"cnn": round(t_cnn, 1), "scenes_and_features": round(time.perf_counter() - t0, 1)}
    return out


# ---------------------------------------------------------------------------------------------- scoring
def _pm1(codes: np.ndarray, L: int) -> np.ndarray:
    from ..codes import unpack_bits

    return np.where(unpack_bits(codes, L), 1, -1).astype(np.int32)


def _hamming(cq: np.ndarray, cdb: np.ndarray, L: int) -> np.ndarray:
    return ((L - _pm1(cq, L) @ _pm1(cdb, L).T) // 2).astype(np.int32)


def _truth(d: dict[str, Any]) -> dict[str, np.ndarray]:
    sc = d["scenes"]
    return {"ml": sc.multilabel(), "labels": sc.labels, "centres": np.nan_to_num(sc.centres, nan=0.0)}


def _map_k(D: np.ndarray, data: dict[str, Any], K: int) -> float:
    from ..metrics import mean_average_precision

    tq, tdb = _truth(data["q"]), _truth(data["db"])
    return float(mean_average_precision(D, tq["ml"], tdb["ml"], limit=min(K, D.shape[1]), tie_aware=True))


def _map_k_r(D: np.ndarray, data: dict[str, Any], K: int, r: float) -> float:
    from ..metrics import map_at_k_r

    tq, tdb = _truth(data["q"]), _truth(data["db"])
    return float(map_at_k_r(D, tq["labels"], tq["centres"], tdb["labels"], tdb["centres"], r, K=min(K, D.shape[1]),
                            tie_aware=True))


def _fit(data: dict[str, Any], hp: dict[str, Any], k: int, seed: int, verbose: bool) -> Any:
    from ..encoders.neurohash import NeuroHash

    params = {key: v for key, v in hp.items() if key not in ("detector",)}
    y = data["db"]["labels"] if hp.get("detector", "gt") == "gt" else None
    params.pop("background", None)
    return NeuroHash(k=k, random_state=seed, verbose=verbose, **params).fit(data["db"]["inputs"], y)


def _baselines(data: dict[str, Any], bits: Sequence[int], K: int, seed: int) -> dict[str, dict[str, float]]:
    """LSH and ITQ on the raw features: [global, mean of the objects' features] (what the HDC pipeline gets)."""
    from ..encoders import get_encoder

    def feats(d: dict[str, Any]) -> np.ndarray:
        inp = d["inputs"]
        m = inp["object_mask"][..., None]
        mean_obj = (inp["object_features"] * m).sum(1) / np.maximum(m.sum(1), 1)
        return np.concatenate([inp["global_features"], mean_obj], axis=1).astype(np.float32)

    Fq, Fdb = feats(data["q"]), feats(data["db"])
    mu = Fdb.mean(0)
    Fq, Fdb = Fq - mu, Fdb - mu
    out: dict[str, dict[str, float]] = {}
    for name in ("lsh", "itq"):
        row = {}
        for L in bits:
            enc = get_encoder(name, k=int(L), random_state=seed).fit(Fdb)
            row[str(L)] = rounded(_map_k(_hamming(enc.encode(Fq), enc.encode(Fdb), L), data, K), 4)
        out[f"{name.upper()} (features)"] = row
    # float references: cosine on the raw features
    n = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)  # noqa: E731
    out["cosine (features, float)"] = {"all": rounded(_map_k(-(n(Fq) @ n(Fdb).T), data, K), 4)}
    return out


# ---------------------------------------------------------------------------------------------- suites
def _prepare(data_dir: str | None, hp: dict[str, Any] | None, data: dict[str, Any] | None, *, split: str = "test",
             **kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The suite's hyperparameters (defaults filled in) and its scenes (built unless given)."""
    hp = {**DEFAULT_HP, **(hp or {})}
    if data is None:
        data = build_scene_data(data_dir, split=split, detector=hp["detector"], background=hp["background"], **kw)
    return hp, data


def run_ablation(
    data_dir: str | None,
    *,
    bits: Sequence[int] = (16, 32, 64),
    K: int = 1000,
    hp: dict[str, Any] | None = None,
    n_db: int = 10_000,
    n_q: int = 1_000,
    seed: int = 0,
    out: str | None = None,
    verbose: bool = True,
    data: dict[str, Any] | None = None,
    cnn_train: int = 60000,
) -> dict[str, Any]:
    """Table II (the loss ablation) at ``bits``, with baselines; see the module docstring."""
    from tqdm.auto import tqdm

    t_all = time.perf_counter()
    hp, data = _prepare(data_dir, hp, data, n_db=n_db, n_q=n_q, seed=seed, verbose=verbose, cnn_train=cnn_train)
    bits = [int(b) for b in bits]
    t0 = time.perf_counter()
    enc = _fit(data, {**hp, "train_hyperplanes": False}, bits[0], seed, verbose)
    t_hdc = time.perf_counter() - t0
    Hdb = enc.hypervectors(data["db"]["inputs"])
    Hq = enc.hypervectors(data["q"]["inputs"])
    n = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)  # noqa: E731
    float_map = _map_k(-(n(Hq - enc.H_mean_) @ n(Hdb - enc.H_mean_).T), data, K)
    variants: dict[str, dict[str, Any]] = {"full": {}, "random": {"train_hyperplanes": False}}
    base_lam = dict(hp.get("lambdas") or {})
    from ..train.neurohash import DEFAULT_LAMBDAS

    for term in TERMS:
        variants[f"no_{term}"] = {"lambdas": {**DEFAULT_LAMBDAS, **base_lam, term: 0.0}}
    rows: dict[str, dict[str, float]] = {}
    timings: dict[str, dict[str, float]] = {}
    jobs = [(v, L) for v in variants for L in bits]
    for name, L in tqdm(jobs, desc="neurohash ablation", disable=not verbose):
        params = {"k": L, "train_hyperplanes": True, "lambdas": base_lam or None, **variants[name]}
        t0 = time.perf_counter()
        enc.refit_hyperplanes(H=Hdb, **params)
        fit_s = time.perf_counter() - t0
        D = _hamming(enc.encode(data["q"]["inputs"]), enc.encode(data["db"]["inputs"]), L)
        rows.setdefault(name, {})[str(L)] = rounded(_map_k(D, data, K), 4)
        timings.setdefault(name, {})[str(L)] = round(fit_s, 2)
    res = {
        "suite": "neurohash-ablation",
        "table": "NeuroHash paper, Table II (loss ablation), on spatial MNIST scenes",
        "metric": f"mAP@{K} (multi-label: shares a digit class), tie-aware",
        "rows": rows,
        "gain_over_random": {L: rounded(rows["full"][L] - rows["random"][L], 4) for L in rows["full"]},
        "baselines": _baselines(data, bits, K, seed),
        "float": {"cosine (centred hypervectors)": rounded(float_map, 4)},
        "hyperparameters": {**hp, **{key: getattr(enc, key) for key in ("z_prime", "lambda_rec", "hdc_epochs", "epochs",
                                                                         "lr", "batch_size")},
                            "lambdas": {**DEFAULT_LAMBDAS, **base_lam}},
        "protocol": _protocol(data, n_db, n_q, K, seed),
        "timings": {"hdc_encoder_s": round(t_hdc, 1), "hyperplanes_s": timings, **data["seconds"],
                    "total_s": round(time.perf_counter() - t_all, 1)},
        "environment": environment(),
    }
    write_json(res, out)
    return res


def _protocol(data: dict[str, Any], n_db: int, n_q: int, K: int, seed: int) -> dict[str, Any]:
    return {
        "scenes": "64x64, 1-4 MNIST digits, scale 0.8-1.2, no overlap (make_scenes defaults)",
        "queries": f"{n_q} scenes from MNIST test digits 0-4999" if data["split"] == "test" else
        f"{n_q} scenes from MNIST training digits 0-29999 (validation)",
        "database": f"{n_db} scenes from MNIST test digits 5000-9999" if data["split"] == "test" else
        f"{n_db} scenes from MNIST training digits 30000-59999 (validation)",
        "training": "the database scenes",
        "background": data.get("background") or "black",
        "image_encoder": {"model": "digit CNN (hashplug.train.digit_cnn), 60k MNIST training digits", **data["cnn"]},
        "K": K,
        "seed": seed,
    }


def run_spatial(
    data_dir: str | None,
    *,
    bits: Sequence[int] = (16, 32, 64),
    K: int = 1000,
    ws: Sequence[float] = (10.0, 1.0, 0.1),
    rs: Sequence[float] = (0.1, 0.2, 0.3, 0.4),
    hp: dict[str, Any] | None = None,
    n_db: int = 10_000,
    n_q: int = 1_000,
    seed: int = 0,
    cond_top: int = 100,
    cond_r: float = 0.2,
    out: str | None = None,
    png: str | None = None,
    verbose: bool = True,
    data: dict[str, Any] | None = None,
    cnn_train: int = 60000,
) -> dict[str, Any]:
    """Table III's w trend (mAP@K_r) and the conditional-retrieval share; see the module docstring."""
    from tqdm.auto import tqdm

    t_all = time.perf_counter()
    hp, data = _prepare(data_dir, hp, data, n_db=n_db, n_q=n_q, seed=seed, verbose=verbose, cnn_train=cnn_train)
    bits = [int(b) for b in bits]
    table: dict[str, dict[str, dict[str, float]]] = {}
    plain_map: dict[str, dict[str, float]] = {}
    cond: dict[str, Any] = {}
    fits: dict[str, float] = {}
    qin, dbin = data["q"]["inputs"], data["db"]["inputs"]
    two = np.flatnonzero(qin["object_mask"].sum(1) >= 2)  # queries with another object to ignore
    focus = np.zeros(len(two), dtype=np.int64)
    sq, sdb = data["q"]["scenes"], data["db"]["scenes"]
    # the focused object is the detector's slot 0; its class is the ground-truth digit nearest to its centre
    q_pos = qin["object_positions"][two, 0].astype(np.float64)
    q_cls = nearest_truth(sq, two, q_pos)
    for w in tqdm(ws, desc="neurohash w", disable=not verbose):
        t0 = time.perf_counter()
        enc = _fit(data, {**hp, "w": float(w)}, bits[0], seed, verbose)
        Hdb = enc.hypervectors(dbin)
        key = f"w={w:g}"
        for L in bits:
            if L != bits[0]:
                enc.refit_hyperplanes(H=Hdb, k=L)
            cq, cdb = enc.encode(qin), enc.encode(dbin)
            D = _hamming(cq, cdb, L)
            plain_map.setdefault(key, {})[str(L)] = rounded(_map_k(D, data, K), 4)
            for r in rs:
                table.setdefault(key, {}).setdefault(f"r={r:g}", {})[str(L)] = rounded(_map_k_r(D, data, K, r), 4)
            sub = {k: v[two] for k, v in qin.items()}
            cond.setdefault(key, {})[str(L)] = _conditional_shares(enc, sub, focus, cdb, L, (q_cls, q_pos, sdb),
                                                                   cond_top, cond_r)
            if png and key == f"w={ws[-1]:g}" and L == bits[-1]:
                _plot_grid(png, sq, sdb, two[:6], enc, sub, cdb, L, focus)
        fits[key] = round(time.perf_counter() - t0, 1)
    res = {
        "suite": "neurohash-spatial",
        "table": "NeuroHash paper, Table III (mAP@K_r as the length scale w varies), on spatial MNIST scenes",
        "metric": f"mAP@{K}_r, tie-aware (relevant: an object of a query object's class within r)",
        "rows": table,
        "map_at_k": plain_map,
        "conditional": {
            "metric": f"share of the top {cond_top} holding an object of the focused object's class within "
                      f"r = {cond_r} of its position ({len(two)} queries with >= 2 objects; focus = the first)",
            "rows": cond,
        },
        "hyperparameters": hp,
        "protocol": _protocol(data, n_db, n_q, K, seed),
        "timings": {"per_w_s": fits, **data["seconds"], "total_s": round(time.perf_counter() - t_all, 1)},
        "environment": environment(),
    }
    write_json(res, out)
    return res


def _conditional_shares(enc: Any, sub: dict[str, np.ndarray], focus: np.ndarray, cdb: np.ndarray, L: int,
                        truth: tuple[np.ndarray, np.ndarray, Any], cond_top: int, cond_r: float) -> dict[str, Any]:
    """Conditional retrieval: eta = 10 on the query's focused object against eta = 1, as the share of the top
    ``cond_top`` holding an object of the focused object's class (``truth``: classes, positions, database
    scenes) within ``cond_r`` of its position."""
    from ..hdc import conditional_eta

    q_cls, q_pos, sdb = truth
    shares = {}
    for name, eta in (("eta=1", None), ("eta=10", conditional_eta(sub["object_positions"],
                                                                    sub["object_mask"], focus=focus))):
        qq = sub if eta is None else {**sub, "eta": eta}
        Dc = _hamming(enc.encode(qq), cdb, L)
        top = np.argsort(Dc, axis=1, kind="stable")[:, :cond_top]
        shares[name] = rounded(_conditional_share(top, q_cls, q_pos, sdb, cond_r), 4)
    return shares


def nearest_truth(scenes: Any, rows: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Class of the ground-truth object of ``scenes[rows]`` nearest to each normalised position ``pos`` (n, 2)."""
    cen = scenes.centres[rows]  # (n, K, 2), NaN at padding
    d2 = np.where(scenes.valid[rows], ((np.nan_to_num(cen, nan=9.0) - pos[:, None, :]) ** 2).sum(-1), np.inf)
    return scenes.labels[rows, np.argmin(d2, axis=1)]


def _conditional_share(top: np.ndarray, cls: np.ndarray, pos: np.ndarray, sdb: Any, r: float) -> float:
    """Mean over queries of the share of ``top`` database scenes holding a ``cls`` object within ``r`` of ``pos``."""
    lab = sdb.labels[top]  # (n, T, K)
    cen = np.nan_to_num(sdb.centres[top])  # (n, T, K, 2)
    d2 = ((cen - pos[:, None, None, :]) ** 2).sum(-1)
    hit = np.any((lab == cls[:, None, None]) & (d2 <= r * r), axis=2)
    return float(hit.mean())


def _plot_grid(png: str, sq: Any, sdb: Any, rows: np.ndarray, enc: Any, sub: dict[str, np.ndarray], cdb: np.ndarray,
               L: int, focus: np.ndarray, n_show: int = 6) -> None:
    """Queries (with the focused object boxed) and their top results, plain and conditional."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..hdc import conditional_eta

    idx = np.arange(len(rows))
    plain = {k: v[idx] for k, v in sub.items()}
    eta = conditional_eta(plain["object_positions"], plain["object_mask"], focus=focus[idx])
    fig, axes = plt.subplots(2 * len(rows), n_show + 1, figsize=(1.3 * (n_show + 1), 2.6 * len(rows)))
    for i, qi in enumerate(rows):
        for j, (name, qq) in enumerate((("eta=1", plain), ("eta=10", {**plain, "eta": eta}))):
            D = _hamming(enc.encode({k: v[i : i + 1] for k, v in qq.items()}), cdb, L)[0]
            top = np.argsort(D, kind="stable")[:n_show]
            ax_row = axes[2 * i + j]
            ax_row[0].imshow(sq.images[qi], cmap="gray")
            if j == 1:  # the focused object: the detector's slot, drawn around its centre
                H, W = sq.images.shape[-2:]
                cx, cy = plain["object_positions"][i, focus[i]] * np.array([W, H])
                ax_row[0].add_patch(plt.Rectangle((cx - 8, cy - 10), 16, 20, fill=False, color="red"))
            ax_row[0].set_title(f"query {name}", fontsize=7)
            for c, t in enumerate(top):
                ax_row[c + 1].imshow(sdb.images[t], cmap="gray")
                ax_row[c + 1].set_title(f"d={D[t]}", fontsize=7)
            for ax in ax_row:
                ax.axis("off")
    fig.suptitle(f"NeuroHash ({L} bits, w={enc.w:g}): queries and top results, plain and focused (red box)", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def run_tune(
    data_dir: str | None,
    grid: dict[str, list[Any]],
    *,
    bits: int = 32,
    K: int = 1000,
    hp: dict[str, Any] | None = None,
    n_db: int = 5_000,
    n_q: int = 500,
    seed: int = 0,
    out: str | None = None,
    verbose: bool = True,
    cnn_train: int = 60000,
) -> dict[str, Any]:
    """Validation search over hashing parameters (``lambdas.<term>``, ``lr``, ``epochs``, ``batch_size``) at one
    length, on scenes built from MNIST training digits."""
    import itertools

    hp, data = _prepare(data_dir, hp, None, split="val", n_db=n_db, n_q=n_q, seed=seed, verbose=verbose,
                        cnn_train=cnn_train)
    from ..train.neurohash import DEFAULT_LAMBDAS

    enc = _fit(data, {**hp, "train_hyperplanes": False}, bits, seed, verbose)
    Hdb = enc.hypervectors(data["db"]["inputs"])
    keys = list(grid)
    results = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        params: dict[str, Any] = {"k": bits, "train_hyperplanes": True}
        lam = dict(DEFAULT_LAMBDAS)
        for key, v in zip(keys, combo):
            if key.startswith("lambdas."):
                lam[key.split(".", 1)[1]] = float(v)
            else:
                params[key] = v
        enc.refit_hyperplanes(H=Hdb, lambdas=lam, **params)
        D = _hamming(enc.encode(data["q"]["inputs"]), enc.encode(data["db"]["inputs"]), bits)
        results.append({"params": dict(zip(keys, combo)), "val_map": rounded(_map_k(D, data, K), 4)})
        if verbose:
            print(results[-1], flush=True)
    enc.refit_hyperplanes(H=Hdb, k=bits, train_hyperplanes=False)
    D = _hamming(enc.encode(data["q"]["inputs"]), enc.encode(data["db"]["inputs"]), bits)
    res = {
        "suite": "neurohash-tune",
        "bits": bits,
        "results": sorted(results, key=lambda r: -r["val_map"]),
        "random_hyperplanes": rounded(_map_k(D, data, K), 4),
        "hyperparameters": hp,
        "protocol": _protocol(data, n_db, n_q, K, seed),
        "environment": environment(),
    }
    write_json(res, out)
    return res


def _print(res: dict[str, Any]) -> None:
    if res["suite"] == "neurohash-ablation":
        bits = list(next(iter(res["rows"].values())))
        print(f"{res['table']}: {res['metric']}")
        print(f"{'row':<24}" + "".join(f"{b:>8}" for b in bits))
        for name, row in {**res["rows"], **res["baselines"]}.items():
            if set(bits) <= set(row):
                print(f"{name:<24}" + "".join(f"{row[b]:>8.4f}" for b in bits))
        floats = {**{k: v["all"] for k, v in res["baselines"].items() if "all" in v}, **res["float"]}
        print(f"gain of full over random: {res['gain_over_random']}; float references: {floats}")
    elif res["suite"] == "neurohash-spatial":
        print(f"{res['table']}: {res['metric']}")
        for w, rr in res["rows"].items():
            for r, row in rr.items():
                print(f"{w:<8}{r:<8}" + "".join(f"{b:>6}:{v:.4f}" for b, v in row.items()))
        print(res["conditional"]["metric"])
        for w, rows in res["conditional"]["rows"].items():
            print(w, rows)


#: The validation grid of ``hashplug bench neurohash-tune`` without ``--grid``.
TUNE_GRID: dict[str, list[float]] = {"lambdas.o": [0.0, 0.1, 1.0], "lambdas.w": [0.0, 0.1, 1.0]}


class _NeuroHashSuite(Suite):
    """The NeuroHash suites' shared flags and settings (scenes of MNIST digits, a digit CNN, NeuroHash)."""

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        suite.add_data(parser, "MNIST file (the scenes' digits and the digit CNN's training set)")
        suite.add_max_rows(parser, "smoke run: N database scenes, max(50, N/10) query scenes and a digit CNN "
                                 "trained on min(60000, 10 N) digits (not the paper protocol)")
        suite.add_hp(parser, "NeuroHash parameters (e.g. {\"lambdas\": {\"o\": 0.1}})")
        suite.add_out(parser)

    def settings(self, args: argparse.Namespace) -> dict[str, Any]:
        kw: dict[str, Any] = {"hp": json.loads(args.hp) if args.hp else None, "out": args.out}
        if suite.max_rows_of(args):  # smoke runs: fewer scenes, an image encoder trained on fewer digits
            kw.update(n_db=int(suite.max_rows_of(args)), n_q=max(50, int(suite.max_rows_of(args)) // 10),
                      cnn_train=min(60000, 10 * int(suite.max_rows_of(args))))
        return kw

    def print(self, name: str, result: dict[str, Any], args: argparse.Namespace) -> None:
        _print(result)


class NeuroHashAblationSuite(_NeuroHashSuite):
    """``hashplug bench neurohash-ablation``: the NeuroHash paper's Table II (loss ablation) with baselines."""

    names = ("neurohash-ablation",)
    help = "NeuroHash paper Table II: the loss ablation (mAP@K of MNIST scenes) with LSH and ITQ baselines"

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        suite.add_lengths(parser, "code lengths in bits, each a column (default 16 32 64)")
        super().add_arguments(parser, name)

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        return run_ablation(args.data, bits=suite.lengths_of(args) or (16, 32, 64), **self.settings(args))


class NeuroHashSpatialSuite(_NeuroHashSuite):
    """``hashplug bench neurohash-spatial``: spatially conditioned queries (the paper's Table III)."""

    names = ("neurohash-spatial",)
    help = "NeuroHash paper Table III: mAP@K_r as the length scale w varies, and conditional retrieval"

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        suite.add_lengths(parser, "code lengths in bits, each a column (default 16 32 64)")
        suite.add_png(parser, "a grid of queries and their nearest scenes")
        super().add_arguments(parser, name)

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        return run_spatial(args.data, bits=suite.lengths_of(args) or (16, 32, 64), png=args.png, **self.settings(args))


class NeuroHashTuneSuite(_NeuroHashSuite):
    """``hashplug bench neurohash-tune``: NeuroHash's loss weights on a validation split."""

    names = ("neurohash-tune",)
    help = "NeuroHash loss weights (lambdas) chosen on a validation split"

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        suite.add_lengths(parser, "code length in bits (the first value; default 32)")
        suite.add_grid(parser, "NeuroHash parameter -> values (default "
                 + ", ".join(f"{k} {' '.join(map(str, v))}" for k, v in TUNE_GRID.items()) + ")")
        super().add_arguments(parser, name)

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        grid = json.loads(args.grid) if args.grid else TUNE_GRID
        return run_tune(args.data, grid, bits=(suite.lengths_of(args) or [32])[0], **self.settings(args))

    def print(self, name: str, result: dict[str, Any], args: argparse.Namespace) -> None:
        print(json.dumps(result["results"][:5], indent=1), "random:", result["random_hyperplanes"])


for _suite in (NeuroHashAblationSuite, NeuroHashSpatialSuite, NeuroHashTuneSuite):
    register_suite(_suite)


def bench_neurohash(args: argparse.Namespace) -> int:
    """CLI entry of ``hashplug bench neurohash-ablation | neurohash-spatial | neurohash-tune``."""
    from .suite import run_suite

    return run_suite(args.suite, args)
