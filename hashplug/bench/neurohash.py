"""``hashplug bench neurohash-*``: the NeuroHash experiments on spatial MNIST scenes, on the fair protocol of
:mod:`hashplug.bench.protocol` (issue 30).

The paper's data (MS COCO, CIFAR-10) and backbones (DINOv2 ViT-g/14, Detectron2) cannot be had here. The
offline protocol, recorded in every JSON under ``"protocol"``:

* **scenes** (:func:`hashplug.data.scenes.make_scenes`): 64 x 64 canvases with 1-4 real MNIST digits at
  random positions and scales, boxes and classes recorded. Test: query scenes from MNIST test digits
  0-4,999, database scenes from test digits 5,000-9,999 (no digit image is in both); the hashing is trained,
  without labels, on the database scenes (the paper's retrieval set). **Validation**: query scenes from MNIST
  training digits 50,000-54,999 and database scenes from 55,000-59,999, digits that neither the image encoder
  (trained on training digits 0-49,999) nor any test scene contains; the JSON records the digit ranges and
  the run refuses ranges that overlap.
* **image encoder**: the digit CNN of :mod:`hashplug.train.digit_cnn` trained on MNIST training digits
  0-49,999 (its test accuracy is in the JSON); it embeds whole scenes and object crops alike. Each seed
  trains its own CNN (seed ``s``), draws its own scenes and hyperplanes.
* **detector**: the ground-truth boxes (``--hp '{"detector": "cc"}'``: connected components);
  ``--hp '{"background": "cifar10"}'`` puts a dimmed CIFAR-10 image behind every scene.
* **pseudo-labels** of NeuroHash's stage 1 (the HDC encoder's ``L_c``): k-means of the object features by
  default (unsupervised: the detector's classes are not relevance labels); ``--gt-labels`` adds the row
  ``full_gt_labels`` with the ground-truth digit classes instead, reported separately.
* **relevance**: mAP@K with multi-label relevance (a database scene is relevant when it shares a digit class
  with the query), K = 1,000 of 10,000 (10 %, the paper uses 5,000 of 117k on COCO); mAP@K_r: relevant when
  an object of the query's class lies within r (normalised coordinates) of one of the query's objects.
* **tuning**: NeuroHash's hyperplane stage (start, lr, every loss weight, ``L_u`` normalised by ``L^2`` or
  not) is chosen by a random search of ``--budget`` settings of :data:`TUNE_GRID` at 32 bits on the
  validation split (seed 0's CNN); the baselines have no knob of that kind (their grids are ``{}``). Grid,
  settings and scores are in the JSON under ``"tuning"``; every NeuroHash row then runs at the chosen setting.

Rows (each ``{"16": ..., "32": ..., "64": ...}``, the mean over seeds; ``"std"`` and ``"per_seed"`` beside):

* ``full`` (the chosen setting), ``random`` (N(0, 1) hyperplanes untrained, the paper's random row),
  ``no_<term>`` (the chosen setting with one loss weight at 0), ``mse_only``;
* ``itq_raw``, ``lsh_raw``: ITQ and LSH on the raw backbone features ([global, mean object feature], centred);
  ``itq_hv``, ``pca_hv``: ITQ and PCAHash on the centred, row-normalised hypervectors NeuroHash's hyperplanes
  see (their top 64 principal directions, exact by Lanczos: ITQ's and PCAHash's own PCA of those scores is the
  hypervectors' PCA);
* ``float_raw``, ``float_hv``: cosine on the same two inputs (the float ceilings), ``chance``: the expected
  mAP of a uniformly random ranking (exact; :func:`hashplug.bench.protocol.chance_map`).

Suites: ``neurohash-ablation`` (Table II with the rows above), ``neurohash-spatial`` (Table III's w trend
with mAP@K_r and the conditional share: ``NeuroHash w=<w>`` at the chosen setting, the same untrained
references on each w's hypervectors, ``itq_hv w=<w>``, ``pca_hv w=<w>``, ``float_hv w=<w>``, whose focused
queries are the same conditional hypervectors, and the position-blind ``itq_raw``, ``lsh_raw``, ``float_raw``,
``float_global`` and ``chance``), ``neurohash-tune``
(the validation search alone); ``neurohash-cifar10`` lives in :mod:`hashplug.bench.neurohash_cifar10`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from . import suite
from .common import environment, rounded, write_json
from .protocol import TuningBudget, chance_map, cosine_distances, seed_summary
from .suite import Suite, register_suite

__all__ = [
    "build_scene_data",
    "run_ablation",
    "run_spatial",
    "run_tune",
    "bench_neurohash",
    "reference_distances",
    "tuned_setting",
    "TERMS",
    "TUNE_GRID",
]

TERMS: tuple[str, ...] = ("mse", "w", "q", "u", "o")

#: Defaults of the NeuroHash fits in the benches (the paper gives D = 10,000 and nothing else).
DEFAULT_HP: dict[str, Any] = {"D": 10_000, "w": 1.0, "detector": "gt", "background": None}

#: MNIST training digits the image encoder trains on; the rest (50,000-59,999) make the validation scenes.
CNN_DIGITS = 50_000

#: NeuroHash's hyperplane-stage knobs searched on validation (``--budget`` settings drawn from the product).
TUNE_GRID: dict[str, list[Any]] = {
    "init": ["gaussian", "pca_itq"],
    "lr": [1e-2, 1e-3],
    "u_normalized": [False, True],
    "lambdas.w": [0.0, 0.1],
    "lambdas.q": [0.0, 0.1],
    "lambdas.u": [0.0, 1e-3, 0.1],
    "lambdas.o": [0.0, 0.1],
}

#: Settings of the validation search (random search over :data:`TUNE_GRID`).
DEFAULT_BUDGET = 24

#: Reference rows (no knob of the tuned kind: their grids in the JSON are ``{}``).
REFERENCE_ROWS: tuple[str, ...] = ("itq_raw", "lsh_raw", "itq_hv", "pca_hv", "float_raw", "float_hv", "chance")

#: How many principal directions of the hypervectors the ``*_hv`` baselines keep (>= the longest code).
HV_COMPONENTS = 64


# ---------------------------------------------------------------------------------------------- data
def _digit_ranges(split: str, n_train: int, n_test: int, cnn_digits: int) -> dict[str, tuple[int, int]]:
    """Row ranges of the stacked MNIST array (training digits first) each part of a split uses."""
    from ..validation import HashplugError

    if split == "test":  # MNIST: test digits 0-4,999 for queries, 5,000-9,999 for the database
        ranges = {"queries": (n_train, n_train + n_test // 2), "database": (n_train + n_test // 2, n_train + n_test)}
    elif split == "val":  # training digits the CNN never saw
        half = cnn_digits + (n_train - cnn_digits) // 2
        ranges = {"queries": (cnn_digits, half), "database": (half, n_train)}
    else:
        raise HashplugError(f"split must be 'test' or 'val'; got {split!r}.")
    ranges["image_encoder"] = (0, cnn_digits)
    spans = sorted(ranges.values())
    if any(a[1] > b[0] for a, b in zip(spans, spans[1:])) or any(lo >= hi for lo, hi in spans):
        raise HashplugError(f"the digit ranges of the {split!r} split overlap or are empty: {ranges}; give the image "
                            f"encoder fewer digits (cnn_train < {n_train}).")
    return ranges


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
    cnn_train: int = CNN_DIGITS,
    verbose: bool = True,
    net: Any = None,
) -> dict[str, Any]:
    """Scenes, their named inputs and annotations, for queries and database (see the module docstring).

    ``cnn_train`` < 50,000 trains the image encoder on fewer digits (smoke runs only); the validation digits
    stay 50,000-59,999 whatever it is (``min(cnn_train, n_train)`` .. when the data is smaller). ``net``
    reuses a trained image encoder (its info must then be in ``net.hashplug_info``).
    """
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
    held_out = min(CNN_DIGITS, int(n_train * CNN_DIGITS / 60_000))  # smaller files keep the same proportions
    n_cnn = min(int(cnn_train), held_out)
    ranges = _digit_ranges(split, n_train, n_test, held_out)
    t0 = time.perf_counter()
    if net is None:
        net, info = train_digit_cnn(X[:n_cnn], y[:n_cnn], epochs=cnn_epochs, random_state=seed, X_test=X[n_train:],
                                    y_test=y[n_train:], verbose=verbose)
        info["train_digits"] = n_cnn
        net.hashplug_info = info
    info = dict(net.hashplug_info)
    t_cnn = time.perf_counter() - t0
    t0 = time.perf_counter()
    bg = None
    if background == "cifar10":  # the CIFAR-10 test images behind the queries, the training images behind the rest
        from ..data.cifar10 import load_cifar10

        cx, _ = load_cifar10()
        cx = np.ascontiguousarray(cx.transpose(0, 3, 1, 2))
        bg = (cx[50000:], cx[:50000])
    elif background is not None:
        raise HashplugError(f"background must be None or 'cifar10'; got {background!r}.")
    q_src, db_src = (slice(*ranges["queries"]), slice(*ranges["database"]))
    sq = make_scenes(X[q_src], y[q_src], n_q, seed=seed * 10 + 2, background=None if bg is None else bg[0])
    sdb = make_scenes(X[db_src], y[db_src], n_db, seed=seed * 10 + 1, background=None if bg is None else bg[1])

    def enc(x: np.ndarray) -> np.ndarray:
        return image_features(net, x)

    out: dict[str, Any] = {"cnn": info, "net": net, "split": split, "background": background, "seed": seed,
                           "digit_ranges": {k: list(v) for k, v in ranges.items()}, "n_train_digits": n_train}
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


def _stage1(data: dict[str, Any], hp: dict[str, Any], seed: int, verbose: bool, gt_labels: bool = False) -> Any:
    """NeuroHash's HDC encoder fitted on the database scenes (hyperplanes untrained: the stage-2 fits follow).
    Pseudo-labels: k-means of the object features, or the detector's classes with ``gt_labels``."""
    from ..encoders.neurohash import NeuroHash

    params = {key: v for key, v in hp.items() if key not in ("detector", "background")}
    params.pop("train_hyperplanes", None)
    y = data["db"]["labels"] if gt_labels else None
    return NeuroHash(k=16, random_state=seed, verbose=verbose, train_hyperplanes=False, **params).fit(
        data["db"]["inputs"], y)


def _stage2_params(setting: dict[str, Any]) -> dict[str, Any]:
    """A tuning setting (``lambdas.<term>`` keys flattened) as ``refit_hyperplanes`` parameters."""
    from ..train.neurohash import DEFAULT_LAMBDAS

    lam = dict(DEFAULT_LAMBDAS)
    params: dict[str, Any] = {"train_hyperplanes": True}  # stage 1 was fitted with untrained hyperplanes
    for key, v in setting.items():
        if key.startswith("lambdas."):
            lam[key.split(".", 1)[1]] = float(v)
        elif key == "lambdas":
            lam.update(v)
        else:
            params[key] = v
    return {**params, "lambdas": lam}


class _Hashed:
    """One seed's trained stage 1 with the hypervectors of its queries and database, hashing at any setting."""

    def __init__(self, enc: Any, data: dict[str, Any]) -> None:
        self.enc, self.data = enc, data
        self.Hdb = enc.hypervectors(data["db"]["inputs"])
        self.Hq = enc.hypervectors(data["q"]["inputs"])

    def distances(self, L: int, params: dict[str, Any]) -> tuple[np.ndarray, float]:
        """Hamming distances (n_q, n_db) of the hyperplanes refitted at ``L`` bits with ``params``, and the fit's
        seconds. Codes from the hypervectors (:meth:`NeuroHash.encode_hypervectors`, bit-identical to
        ``encode`` of the scenes: checked once per seed by :func:`_check_codes`)."""
        t0 = time.perf_counter()
        self.enc.refit_hyperplanes(H=self.Hdb, k=int(L), **params)
        fit_s = time.perf_counter() - t0
        cq, cdb = self.enc.encode_hypervectors(self.Hq), self.enc.encode_hypervectors(self.Hdb)
        return _hamming(cq, cdb, int(L)), fit_s

    def check_codes(self) -> None:
        """The shortcut's codes equal ``encode`` of the query scenes (else a figure could be wrong)."""
        from ..validation import HashplugError

        a = self.enc.encode(self.data["q"]["inputs"])
        if not np.array_equal(a, self.enc.encode_hypervectors(self.Hq)):
            raise HashplugError("NeuroHash.encode_hypervectors disagrees with encode on the query scenes.")


def _raw_features(d: dict[str, Any]) -> np.ndarray:
    """[global feature, mean of the objects' features] (n, 2 z) float32: what the HDC pipeline gets."""
    inp = d["inputs"]
    m = inp["object_mask"][..., None]
    mean_obj = (inp["object_features"] * m).sum(1) / np.maximum(m.sum(1), 1)
    return np.concatenate([inp["global_features"], mean_obj], axis=1).astype(np.float32)


def reference_distances(
    Fq: np.ndarray,
    Fdb: np.ndarray,
    Hq: np.ndarray | None,
    Hdb: np.ndarray | None,
    bits: Sequence[int],
    seed: int,
    *,
    hv_center: np.ndarray | None = None,
) -> Iterator[tuple[str, int | None, np.ndarray]]:
    """The reference rows' distance matrices ``(row, L or None for float rows, D (n_q, n_db))``.

    Parameters
    ----------
    Fq, Fdb : ndarray of shape (n, d) float32
        Raw backbone features (centred here by the database mean).
    Hq, Hdb : ndarray of shape (n, 2 D) float32, optional
        Hypervectors (centred by ``hv_center``, then rows normalised: the input of NeuroHash's hyperplanes).
    bits : sequence of int
    seed : int
        ``random_state`` of LSH and ITQ.
    """
    from ..encoders import get_encoder

    mu = Fdb.mean(0)
    Fq, Fdb = Fq - mu, Fdb - mu
    for name in ("itq", "lsh"):
        for L in bits:
            e = get_encoder(name, k=int(L), random_state=seed).fit(Fdb)
            yield f"{name}_raw", int(L), _hamming(e.encode(Fq), e.encode(Fdb), int(L))
    yield "float_raw", None, cosine_distances(Fq, Fdb)
    if Hq is None or Hdb is None:
        return
    for row, L, embed in hv_references(Hdb, bits, seed, hv_center=hv_center):
        yield row, L, embed.distances(Hq)


class _HvEmbedding:
    """One untrained reference on hypervectors, fitted on the database's: ``distances(H)`` (n, n_db) of any
    queries' hypervectors (the plain ones, or a conditional query's) to the database."""

    def __init__(self, unit: Callable[[np.ndarray], np.ndarray], Ndb: np.ndarray, mean: np.ndarray,
                 V: np.ndarray | None, encoder: Any, L: int | None) -> None:
        self.unit, self.mean, self.V, self.encoder, self.L = unit, mean, V, encoder, L
        self.db = self._embed_unit(Ndb)

    def _embed_unit(self, N: np.ndarray) -> np.ndarray:
        if self.encoder is None:
            return N
        return self.encoder.encode(((N - self.mean) @ self.V).astype(np.float32))

    def distances(self, H: np.ndarray) -> np.ndarray:
        q = self._embed_unit(self.unit(H))
        return cosine_distances(q, self.db) if self.encoder is None else _hamming(q, self.db, int(self.L))


def hv_references(Hdb: np.ndarray, bits: Sequence[int], seed: int, *, hv_center: np.ndarray | None = None
                  ) -> Iterator[tuple[str, int | None, _HvEmbedding]]:
    """The untrained references on the hypervectors, fitted on the database's ``Hdb`` (n_db, 2 D): ``itq_hv``
    and ``pca_hv`` (ITQ / PCAHash on the top principal directions of the centred, row-normalised
    hypervectors, NeuroHash's own hashing input) at every length, and ``float_hv`` (cosine on them)."""
    from ..encoders import get_encoder
    from ..encoders.neurohash import principal_directions

    def unit(H: np.ndarray) -> np.ndarray:
        Hc = H - (0 if hv_center is None else hv_center)
        return (Hc / np.maximum(np.linalg.norm(Hc, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    Ndb = unit(Hdb)
    n_pc = min(max(HV_COMPONENTS, max(bits)), min(Ndb.shape) - 1)
    V = principal_directions(Ndb, n_pc, seed)
    m = Ndb.mean(0, dtype=np.float64)
    Zdb = ((Ndb - m) @ V).astype(np.float32)
    for name, row in (("itq", "itq_hv"), ("pcahash", "pca_hv")):
        for L in bits:
            yield row, int(L), _HvEmbedding(unit, Ndb, m, V, get_encoder(name, k=int(L), random_state=seed).fit(Zdb),
                                            int(L))
    yield "float_hv", None, _HvEmbedding(unit, Ndb, m, V, None, None)


# ---------------------------------------------------------------------------------------------- tuning
def run_tune(
    data_dir: str | None,
    grid: dict[str, list[Any]] | None = None,
    *,
    bits: int = 32,
    K: int = 1000,
    hp: dict[str, Any] | None = None,
    budget: int | None = DEFAULT_BUDGET,
    n_db: int = 5_000,
    n_q: int = 500,
    seed: int = 0,
    out: str | None = None,
    verbose: bool = True,
    cnn_train: int = CNN_DIGITS,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validation search over NeuroHash's hyperplane stage at one length, on scenes of MNIST training digits the
    image encoder never saw (``split="val"``): ``budget`` settings drawn from ``grid`` (default
    :data:`TUNE_GRID`); the result's ``"chosen"`` is the best. The reference rows are scored on the same split."""
    from tqdm.auto import tqdm

    t_all = time.perf_counter()
    grid = dict(grid or TUNE_GRID)
    hp, data = _prepare(data_dir, hp, data, split="val", n_db=n_db, n_q=n_q, seed=seed, verbose=verbose,
                        cnn_train=cnn_train)
    tb = TuningBudget({"NeuroHash": grid, **{r: {} for r in REFERENCE_ROWS}}, budget=budget, seed=seed)
    hashed = _Hashed(_stage1(data, hp, seed, verbose), data)
    results = []
    for setting in tqdm(tb.settings["NeuroHash"], desc="neurohash validation", disable=not verbose):
        D, fit_s = hashed.distances(bits, _stage2_params(setting))
        results.append({"params": setting, "val_map": rounded(_map_k(D, data, K), 4), "fit_s": round(fit_s, 1)})
        if verbose:
            print(results[-1], flush=True)
    refs = {row: rounded(_map_k(D, data, K), 4)
            for row, L, D in reference_distances(_raw_features(data["q"]), _raw_features(data["db"]), hashed.Hq,
                                                 hashed.Hdb, [bits], seed, hv_center=hashed.enc.H_mean_)}
    refs["chance"] = rounded(chance_map(_truth(data["q"])["ml"], _truth(data["db"])["ml"], K), 4)
    D, _ = hashed.distances(bits, {"train_hyperplanes": False, "init": "gaussian"})
    refs["random"] = rounded(_map_k(D, data, K), 4)
    ranked = sorted(results, key=lambda r: -r["val_map"])
    res = {
        "suite": "neurohash-tune",
        "bits": bits,
        "metric": f"validation mAP@{K}",
        "chosen": ranked[0]["params"],
        "results": ranked,
        "references": refs,
        "random_hyperplanes": refs["random"],
        "tuning": tb.to_json(),
        "hyperparameters": hp,
        "protocol": _protocol(data, n_db, n_q, K, [seed]),
        "timings": {**data["seconds"], "total_s": round(time.perf_counter() - t_all, 1)},
        "environment": environment(),
    }
    write_json(res, out)
    return res


def tuned_setting(tuned: str | dict[str, Any] | None, tune: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The validation result a table runs at: a ``neurohash-tune`` JSON (path or dict), or ``tune()``'s."""
    from ..validation import HashplugError

    if tuned is None:
        return tune()
    res = json.loads(open(tuned, encoding="utf-8").read()) if isinstance(tuned, str) else tuned
    if res.get("suite") != "neurohash-tune" or "chosen" not in res:
        raise HashplugError(f"{tuned!r} is not a neurohash-tune result (no 'chosen' setting); write one with "
                            "`hashplug bench neurohash-tune --out FILE`.")
    if res.get("protocol", {}).get("split") != "val":
        raise HashplugError(f"{tuned!r} was not chosen on the validation split; tune with neurohash-tune.")
    return res


# ---------------------------------------------------------------------------------------------- suites
def _prepare(data_dir: str | None, hp: dict[str, Any] | None, data: dict[str, Any] | None, *, split: str = "test",
             **kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The suite's hyperparameters (defaults filled in) and its scenes (built unless given)."""
    hp = {**DEFAULT_HP, **(hp or {})}
    if data is None:
        data = build_scene_data(data_dir, split=split, detector=hp["detector"], background=hp["background"], **kw)
    return hp, data


def _seed_list(seeds: int | Sequence[int]) -> list[int]:
    from ..validation import HashplugError

    out = list(range(int(seeds))) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    if not out or min(out) < 0 or len(set(out)) != len(out):
        raise HashplugError(f"seeds must be a count >= 1 or distinct non-negative ints; got {seeds!r}.")
    return out


def _variants(chosen: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """NeuroHash's rows at the chosen setting: full, random, one term off at a time, MSE alone."""
    base = _stage2_params(chosen)
    out = {"full": base, "random": {**base, "train_hyperplanes": False, "init": "gaussian"}}
    for term in TERMS:
        out[f"no_{term}"] = {**base, "lambdas": {**base["lambdas"], term: 0.0}}
    out["mse_only"] = {**base, "lambdas": {t: (base["lambdas"]["mse"] or 1.0) if t == "mse" else 0.0 for t in TERMS}}
    return out


def _tune_first(data_dir: str | None, tuned: str | dict[str, Any] | None, bits: Sequence[int], K: int,
                hp: dict[str, Any], budget: int | None, n_db: int, n_q: int, seed: int, verbose: bool,
                cnn_train: int) -> dict[str, Any]:
    """The validation result a table runs at: ``tuned``, or a search at 32 bits (else the first length) on
    validation scenes half the test sizes."""
    return tuned_setting(tuned, lambda: run_tune(
        data_dir, bits=32 if 32 in bits else bits[0], K=K, hp=hp, budget=budget, n_db=max(50, n_db // 2),
        n_q=max(20, n_q // 2), seed=seed, verbose=verbose, cnn_train=cnn_train))


def _put(per_seed: dict[str, dict[str, list[float]]], row: str, L: int | None, bits: Sequence[int], v: float) -> None:
    """Append one seed's value of ``row`` at ``L`` bits (None: the same value in every column)."""
    for b in ([L] if L is not None else bits):
        per_seed.setdefault(row, {}).setdefault(str(b), []).append(float(v))


def _ablation_seed(d: dict[str, Any], hp: dict[str, Any], variants: dict[str, dict[str, Any]], bits: list[int],
                   K: int, s: int, gt_labels: bool, per_seed: dict[str, dict[str, list[float]]],
                   verbose: bool) -> dict[str, Any]:
    """One seed of Table II: every NeuroHash variant and every reference row, appended to ``per_seed``;
    returns the seed's timings."""
    from tqdm.auto import tqdm

    t_seed = time.perf_counter()
    hashed = _Hashed(_stage1(d, hp, s, verbose), d)
    t_hdc = time.perf_counter() - t_seed
    fits: dict[str, dict[str, float]] = {}
    for name, L in tqdm([(v, L) for v in variants for L in bits], desc=f"neurohash ablation seed {s}",
                        disable=not verbose):
        D, fit_s = hashed.distances(L, variants[name])
        _put(per_seed, name, L, bits, _map_k(D, d, K))
        fits.setdefault(name, {})[str(L)] = round(fit_s, 1)
    hashed.check_codes()
    if gt_labels:
        gt = _Hashed(_stage1(d, hp, s, verbose, gt_labels=True), d)
        for L in bits:
            _put(per_seed, "full_gt_labels", L, bits, _map_k(gt.distances(L, variants["full"])[0], d, K))
    t0 = time.perf_counter()
    for row, L, D in reference_distances(_raw_features(d["q"]), _raw_features(d["db"]), hashed.Hq, hashed.Hdb,
                                         bits, s, hv_center=hashed.enc.H_mean_):
        _put(per_seed, row, L, bits, _map_k(D, d, K))
    _put(per_seed, "chance", None, bits, chance_map(_truth(d["q"])["ml"], _truth(d["db"])["ml"], K))
    return {"hdc_encoder_s": round(t_hdc, 1), "hyperplanes_s": fits, "references_s": round(time.perf_counter() - t0, 1),
            **d["seconds"], "total_s": round(time.perf_counter() - t_seed, 1)}


def run_ablation(
    data_dir: str | None,
    *,
    bits: Sequence[int] = (16, 32, 64),
    K: int = 1000,
    hp: dict[str, Any] | None = None,
    seeds: int | Sequence[int] = 3,
    tuned: str | dict[str, Any] | None = None,
    budget: int | None = DEFAULT_BUDGET,
    gt_labels: bool = False,
    n_db: int = 10_000,
    n_q: int = 1_000,
    out: str | None = None,
    verbose: bool = True,
    cnn_train: int = CNN_DIGITS,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Table II (the loss ablation) at ``bits`` on the fair protocol (see the module docstring).

    ``tuned``: a ``neurohash-tune`` result to run at (path or dict); None runs the validation search first
    (``budget`` settings, 32 bits, seed 0's image encoder, validation scenes of held-out training digits)."""
    t_all = time.perf_counter()
    seed_ids = _seed_list(seeds)
    bits = [int(b) for b in bits]
    hp = {**DEFAULT_HP, **(hp or {})}
    tune = _tune_first(data_dir, tuned, bits, K, hp, budget, n_db, n_q, seed_ids[0], verbose, cnn_train)
    variants = _variants(tune["chosen"])
    per_seed: dict[str, dict[str, list[float]]] = {}
    timings: dict[str, Any] = {}
    protocols = []
    for s in seed_ids:
        hp_s, d = _prepare(data_dir, hp, data, n_db=n_db, n_q=n_q, seed=s, verbose=verbose, cnn_train=cnn_train)
        protocols.append(_protocol(d, n_db, n_q, K, [s]))
        timings[str(s)] = _ablation_seed(d, hp_s, variants, bits, K, s, gt_labels, per_seed, verbose)
        if verbose:
            print(seed_summary(per_seed)["rows"], flush=True)
    res = {
        "suite": "neurohash-ablation",
        "table": "NeuroHash paper, Table II (loss ablation), on spatial MNIST scenes, fair protocol",
        "metric": f"mAP@{K} (multi-label: shares a digit class), tie-aware",
        **_summarise(per_seed, seed_ids),
        "chosen": tune["chosen"],
        "tuning": {k: v for k, v in tune.items() if k != "environment"},
        "hyperparameters": {**hp, "stage2": variants["full"]},
        "protocol": {**protocols[0], "seed": seed_ids, "per_seed": protocols},
        "timings": {"seeds": timings, "total_s": round(time.perf_counter() - t_all, 1)},
        "environment": environment(),
    }
    write_json(res, out)
    return res


def _summarise(per_seed: dict[str, dict[str, list[float]]], seed_ids: list[int]) -> dict[str, Any]:
    """``seeds``, ``rows`` / ``std`` / ``per_seed`` and the two differences a Table II / CIFAR-10 result reports."""
    summary = seed_summary(per_seed)
    rows = summary["rows"]
    return {
        "seeds": seed_ids,
        **summary,
        "gain_over_random": {b: rounded(rows["full"][b] - rows["random"][b], 4) for b in rows["full"]},
        "full_minus_best_reference": {
            b: rounded(rows["full"][b] - max(rows[r][b] for r in ("itq_raw", "itq_hv", "lsh_raw", "pca_hv")), 4)
            for b in rows["full"]},
    }


def merge_runs(docs: Sequence[dict[str, Any]], paths: Sequence[str] = ()) -> dict[str, Any]:
    """One result over the seeds of several runs of one NeuroHash suite (e.g. one seed per process or session).

    The runs must be of the same suite, at the same chosen setting and hyperparameters, on disjoint seeds; the
    per-seed values are put side by side in seed order and every mean / std recomputed.
    """
    from ..validation import HashplugError

    first = docs[0]
    for d in docs[1:]:
        for key in ("suite", "chosen", "hyperparameters"):
            if d.get(key) != first.get(key):
                raise HashplugError(f"runs to merge differ in {key!r}: {first.get(key)!r} vs {d.get(key)!r}; merge runs "
                                    "of one suite at one validated setting (pass the same --tuned file).")
    seeds = [s for d in docs for s in d["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise HashplugError(f"runs to merge share seeds: {seeds}; give each run its own --seeds.")
    order = np.argsort(seeds, kind="stable")

    def stack(parts: list[Any]) -> Any:  # per_seed trees: dicts down to lists of one value per seed
        if isinstance(parts[0], dict):
            return {k: stack([p[k] for p in parts]) for k in parts[0]}
        flat = [v for p in parts for v in p]
        return [flat[i] for i in order]

    out = dict(first)
    seed_ids = sorted(seeds)
    merged = stack([d["per_seed"] for d in docs])
    if first["suite"] == "neurohash-spatial":
        sm = {metric: seed_summary(rows) for metric, rows in merged.items()}
        out.update({"seeds": seed_ids, "rows": {m: sm[m]["rows"] for m in sm if m.startswith("r=")},
                    "map_at_k": sm["map"]["rows"], "std": {m: sm[m]["std"] for m in sm},
                    "per_seed": {m: sm[m]["per_seed"] for m in sm}})
        out["conditional"] = {**first["conditional"], "rows": {"eta=1": sm["cond eta=1"]["rows"],
                                                               "eta=10": sm["cond eta=10"]["rows"]}}
    else:
        out.update(_summarise(merged, seed_ids))
    if "per_seed" in first.get("protocol", {}):
        out["protocol"] = {**first["protocol"], "seed": seed_ids,
                           "per_seed": [p for d in docs for p in d["protocol"]["per_seed"]]}
    out["timings"] = {"runs": [d.get("timings") for d in docs]}
    out["merged_from"] = list(paths)
    out["environment"] = [d.get("environment") for d in docs]
    return out


def _protocol(data: dict[str, Any], n_db: int, n_q: int, K: int, seeds: Sequence[int]) -> dict[str, Any]:
    r = data["digit_ranges"]
    nt = data["n_train_digits"]

    def span(key: str) -> str:
        lo, hi = r[key]
        return (f"MNIST training digits {lo}-{hi - 1}" if hi <= nt else f"MNIST test digits {lo - nt}-{hi - nt - 1}")

    return {
        "split": data["split"],
        "scenes": "64x64, 1-4 MNIST digits, scale 0.8-1.2, no overlap (make_scenes defaults)",
        "queries": f"{n_q} scenes from {span('queries')}",
        "database": f"{n_db} scenes from {span('database')}",
        "digit_ranges": r,
        "training": "the database scenes, without labels (k-means pseudo-labels unless full_gt_labels)",
        "validation": f"scenes of MNIST training digits {r['image_encoder'][1]}-{nt - 1}, which neither the image "
                      "encoder nor any test scene contains",
        "background": data.get("background") or "black",
        "image_encoder": {"model": f"digit CNN (hashplug.train.digit_cnn), MNIST training digits 0-"
                                   f"{r['image_encoder'][1] - 1}", **data["cnn"]},
        "K": K,
        "seed": list(seeds),
    }


def _spatial_seed(d: dict[str, Any], hp: dict[str, Any], stage2: dict[str, Any], bits: list[int], K: int, s: int,
                  ws: Sequence[float], rs: Sequence[float], cond_top: int, cond_r: float,
                  per: dict[str, dict[str, dict[str, list[float]]]], png: str | None, verbose: bool) -> dict[str, Any]:
    """One seed of Table III: NeuroHash at every w, the untrained references on each w's hypervectors and the
    position-blind references, each scored by plain
    mAP@K, mAP@K_r and the conditional share, appended to ``per[metric]``; returns the seed's fit times and
    its number of queries with two or more objects."""
    from tqdm.auto import tqdm

    qin, dbin = d["q"]["inputs"], d["db"]["inputs"]
    two = np.flatnonzero(qin["object_mask"].sum(1) >= 2)  # queries with another object to ignore
    focus = np.zeros(len(two), dtype=np.int64)
    sq, sdb = d["q"]["scenes"], d["db"]["scenes"]
    # the focused object is the detector's slot 0; its class is the ground-truth digit nearest to its centre
    q_pos = qin["object_positions"][two, 0].astype(np.float64)
    q_cls = nearest_truth(sq, two, q_pos)
    sub = {k: v[two] for k, v in qin.items()}

    def score(row: str, L: int | None, D: np.ndarray, Dcond: np.ndarray | None = None) -> None:
        _put(per.setdefault("map", {}), row, L, bits, _map_k(D, d, K))
        for r in rs:
            _put(per.setdefault(f"r={r:g}", {}), row, L, bits, _map_k_r(D, d, K, r))
        for name, Dc in (("eta=1", D[two]), ("eta=10", D[two] if Dcond is None else Dcond)):
            top = np.argsort(Dc, axis=1, kind="stable")[:, :cond_top]
            _put(per.setdefault(f"cond {name}", {}), row, L, bits, _conditional_share(top, q_cls, q_pos, sdb, cond_r))

    fits: dict[str, float] = {}
    for w in tqdm(ws, desc=f"neurohash w (seed {s})", disable=not verbose):
        t0 = time.perf_counter()
        hashed = _Hashed(_stage1(d, {**hp, "w": float(w)}, s, verbose), d)
        for L in bits:
            D, _ = hashed.distances(L, stage2)
            cdb = hashed.enc.encode_hypervectors(hashed.Hdb)
            score(f"NeuroHash w={w:g}", L, D, _hamming(_conditional_codes(hashed.enc, sub, focus), cdb, L))
            if png and w == ws[-1] and L == bits[-1]:
                _plot_grid(png, sq, sdb, two[:6], hashed.enc, sub, cdb, L, focus)
        fits[f"w={w:g}"] = round(time.perf_counter() - t0, 1)
        # the untrained references on the same hypervectors, focused queries included
        t0 = time.perf_counter()
        Hcond = _conditional_hypervectors(hashed.enc, sub, focus)
        for row, L, embed in hv_references(hashed.Hdb, bits, s, hv_center=hashed.enc.H_mean_):
            score(f"{row} w={w:g}", L, embed.distances(hashed.Hq), embed.distances(Hcond))
        fits[f"hv references w={w:g}"] = round(time.perf_counter() - t0, 1)
    for row, L, D in reference_distances(_raw_features(d["q"]), _raw_features(d["db"]), None, None, bits, s):
        score(row, L, D)
    score("float_global", None, cosine_distances(qin["global_features"], dbin["global_features"],
                                                 dbin["global_features"].mean(0)))
    _put(per["map"], "chance", None, bits, chance_map(_truth(d["q"])["ml"], _truth(d["db"])["ml"], K))
    tied = np.zeros((len(sq), len(sdb)), np.float32)  # every item tied: the expected value of a random ranking
    for r in rs:
        _put(per[f"r={r:g}"], "chance", None, bits, _map_k_r(tied, d, K, r))
    return {"per_w_s": fits, "queries_with_two_objects": int(two.size)}


def run_spatial(
    data_dir: str | None,
    *,
    bits: Sequence[int] = (16, 32, 64),
    K: int = 1000,
    ws: Sequence[float] = (10.0, 1.0, 0.1),
    rs: Sequence[float] = (0.1, 0.2, 0.3, 0.4),
    hp: dict[str, Any] | None = None,
    seeds: int | Sequence[int] = 3,
    tuned: str | dict[str, Any] | None = None,
    budget: int | None = DEFAULT_BUDGET,
    n_db: int = 10_000,
    n_q: int = 1_000,
    cond_top: int = 100,
    cond_r: float = 0.2,
    out: str | None = None,
    png: str | None = None,
    verbose: bool = True,
    cnn_train: int = CNN_DIGITS,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Table III's w trend (mAP@K_r), plain mAP@K and the conditional-retrieval share, for NeuroHash at the
    validated setting, for the untrained references on each w's hypervectors (ITQ / PCAHash / float cosine)
    and for the position-blind baselines (ITQ / LSH on the raw features, float cosine on the global features
    and on the raw features), over ``seeds``; see the module docstring."""
    t_all = time.perf_counter()
    seed_ids = _seed_list(seeds)
    bits = [int(b) for b in bits]
    hp = {**DEFAULT_HP, **(hp or {})}
    tune = _tune_first(data_dir, tuned, bits, K, hp, budget, n_db, n_q, seed_ids[0], verbose, cnn_train)
    stage2 = _stage2_params(tune["chosen"])
    per: dict[str, dict[str, dict[str, list[float]]]] = {}  # per[metric][row][L] -> one value per seed
    seeds_info, protocols = {}, []
    for s in seed_ids:
        hp_s, d = _prepare(data_dir, hp, data, n_db=n_db, n_q=n_q, seed=s, verbose=verbose, cnn_train=cnn_train)
        protocols.append(_protocol(d, n_db, n_q, K, [s]))
        seeds_info[str(s)] = _spatial_seed(d, hp_s, stage2, bits, K, s, ws, rs, cond_top, cond_r, per,
                                           png if s == seed_ids[0] else None, verbose)
    sm = {metric: seed_summary(rows) for metric, rows in per.items()}
    res = {
        "suite": "neurohash-spatial",
        "table": "NeuroHash paper, Table III (mAP@K_r as the length scale w varies), on spatial MNIST scenes, with "
                 "position-blind baselines, fair protocol",
        "metric": f"mAP@{K}_r, tie-aware (relevant: an object of a query object's class within r); mean over seeds",
        "seeds": seed_ids,
        "rows": {m: sm[m]["rows"] for m in sm if m.startswith("r=")},
        "map_at_k": sm["map"]["rows"],
        "std": {m: sm[m]["std"] for m in sm},
        "per_seed": {m: sm[m]["per_seed"] for m in sm},
        "conditional": {
            "metric": f"share of the top {cond_top} holding an object of the focused object's class within "
                      f"r = {cond_r} of its position (queries with >= 2 objects, focus = the first); position-blind "
                      "baselines rank the same with and without focus; the hypervector references rank the focused "
                      "queries' hypervectors",
            "rows": {"eta=1": sm["cond eta=1"]["rows"], "eta=10": sm["cond eta=10"]["rows"]},
        },
        "chosen": tune["chosen"],
        "tuning": {k: v for k, v in tune.items() if k != "environment"},
        "hyperparameters": {**hp, "stage2": stage2},
        "protocol": {**protocols[0], "seed": seed_ids, "per_seed": protocols},
        "timings": {"seeds": seeds_info, "total_s": round(time.perf_counter() - t_all, 1)},
        "environment": environment(),
    }
    write_json(res, out)
    return res


def _conditional_inputs(sub: dict[str, np.ndarray], focus: np.ndarray) -> dict[str, np.ndarray]:
    """The queries ``sub`` with eta = 10 on the ``focus`` object (the paper's conditional query)."""
    from ..hdc import conditional_eta

    return {**sub, "eta": conditional_eta(sub["object_positions"], sub["object_mask"], focus=focus)}


def _conditional_codes(enc: Any, sub: dict[str, np.ndarray], focus: np.ndarray) -> np.ndarray:
    """Codes of the conditional queries (:func:`_conditional_inputs`)."""
    return enc.encode(_conditional_inputs(sub, focus))


def _conditional_hypervectors(enc: Any, sub: dict[str, np.ndarray], focus: np.ndarray) -> np.ndarray:
    """Hypervectors (n, 2 D) of the conditional queries (:func:`_conditional_inputs`)."""
    return enc.hypervectors(_conditional_inputs(sub, focus))


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


# ---------------------------------------------------------------------------------------------- printing
def _table(title: str, rows: dict[str, dict[str, float]], std: dict[str, dict[str, float]] | None = None) -> None:
    bits = list(next(iter(rows.values())))
    print(title)
    print(f"{'row':<22}" + "".join(f"{b:>16}" for b in bits))
    for name, row in rows.items():
        cells = [f"{100 * row[b]:.2f}" + (f" ± {100 * std[name][b]:.2f}" if std and name in std else "")
                 for b in bits]
        print(f"{name:<22}" + "".join(f"{c:>16}" for c in cells))


def _print(res: dict[str, Any]) -> None:
    if res["suite"] == "neurohash-ablation":
        _table(f"{res['table']}: {res['metric']} (%)", res["rows"], res.get("std"))
        print(f"chosen on validation: {res['chosen']}; full minus the best hashing reference: "
              f"{res['full_minus_best_reference']}")
    elif res["suite"] == "neurohash-spatial":
        _table(f"plain mAP@K (%), mean over seeds {res['seeds']}", res["map_at_k"], res["std"].get("map"))
        for r, rows in res["rows"].items():
            _table(f"mAP@K_{r} (%)", rows, res["std"].get(r))
        print(res["conditional"]["metric"])
        for eta, rows in res["conditional"]["rows"].items():
            _table(f"conditional share, {eta} (%)", rows)
    elif res["suite"] == "neurohash-tune":
        print(json.dumps(res["results"][:5], indent=1))
        print("chosen:", res["chosen"], "references:", res["references"])


class _NeuroHashSuite(Suite):
    """The NeuroHash suites' shared flags and settings (scenes of MNIST digits, a digit CNN, NeuroHash)."""

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        suite.add_data(parser, "MNIST file (the scenes' digits and the digit CNN's training set)")
        suite.add_max_rows(parser, "smoke run: N database scenes, max(50, N/10) query scenes and a digit CNN "
                                 "trained on min(50000, 10 N) digits (not the paper protocol)")
        suite.add_hp(parser, "NeuroHash parameters of stage 1 and the scenes (e.g. {\"D\": 10000, \"w\": 1})")
        parser.add_argument("--budget", type=int, default=DEFAULT_BUDGET,
                            help=f"validation settings drawn from the tuning grid (default {DEFAULT_BUDGET})")
        suite.add_out(parser)

    def settings(self, args: argparse.Namespace) -> dict[str, Any]:
        kw: dict[str, Any] = {"hp": json.loads(args.hp) if args.hp else None, "out": args.out, "budget": args.budget}
        if suite.max_rows_of(args):  # smoke runs: fewer scenes, an image encoder trained on fewer digits
            kw.update(n_db=int(suite.max_rows_of(args)), n_q=max(50, int(suite.max_rows_of(args)) // 10),
                      cnn_train=min(CNN_DIGITS, 10 * int(suite.max_rows_of(args))))
        return kw

    def print(self, name: str, result: dict[str, Any], args: argparse.Namespace) -> None:
        _print(result)


def add_table_flags(parser: argparse.ArgumentParser) -> None:
    """``--seeds``, ``--tuned``: the flags of the NeuroHash tables."""
    parser.add_argument("--seeds", type=int, nargs="+", default=[3],
                        help="a count (3: seeds 0, 1, 2) or a list of seeds (each trains its own image encoder, "
                             "draws its own scenes and hyperplanes)")
    parser.add_argument("--seed-list", type=int, nargs="+", default=None,
                        help="run exactly these seeds (e.g. --seed-list 2: one seed per process, then --merge)")
    parser.add_argument("--tuned", default=None,
                        help="a neurohash-tune JSON whose chosen setting the rows run at (default: run the "
                             "validation search first)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                        help="combine runs of this suite on disjoint seeds (no measuring) and write --out")


def merge_files(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """``--merge A.json B.json ...``: :func:`merge_runs` of those files, written to ``--out``."""
    from ..validation import HashplugError

    docs = [json.loads(open(p, encoding="utf-8").read()) for p in args.merge]
    if any(d.get("suite") != name for d in docs):
        raise HashplugError(f"--merge takes {name} results; got {[d.get('suite') for d in docs]}.")
    res = merge_runs(docs, args.merge)
    write_json(res, args.out)
    return res


def seeds_of(args: argparse.Namespace) -> int | list[int]:
    """``--seed-list S ...`` exactly those seeds; ``--seeds N`` a count, ``--seeds 0 3 5`` a list."""
    if getattr(args, "seed_list", None):
        return [int(s) for s in args.seed_list]
    return int(args.seeds[0]) if len(args.seeds) == 1 else [int(s) for s in args.seeds]


class NeuroHashAblationSuite(_NeuroHashSuite):
    """``hashplug bench neurohash-ablation``: the NeuroHash paper's Table II (loss ablation) with baselines."""

    names = ("neurohash-ablation",)
    help = ("NeuroHash paper Table II: the loss ablation (mAP@K of MNIST scenes) against ITQ, LSH, PCAHash and "
            "float cosine on the same inputs, the chance floor, >= 3 seeds, tuned on validation")

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        suite.add_lengths(parser, "code lengths in bits, each a column (default 16 32 64)")
        add_table_flags(parser)
        parser.add_argument("--gt-labels", action="store_true",
                            help="add the row full_gt_labels: stage 1 trained on the ground-truth digit classes")
        super().add_arguments(parser, name)

    merge = staticmethod(merge_files)

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        return run_ablation(args.data, bits=suite.lengths_of(args) or (16, 32, 64), seeds=seeds_of(args),
                            tuned=args.tuned, gt_labels=args.gt_labels, **self.settings(args))


class NeuroHashSpatialSuite(_NeuroHashSuite):
    """``hashplug bench neurohash-spatial``: spatially conditioned queries (the paper's Table III)."""

    names = ("neurohash-spatial",)
    help = ("NeuroHash paper Table III: mAP@K_r as the length scale w varies, and conditional retrieval, against "
            "position-blind baselines")

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        suite.add_lengths(parser, "code lengths in bits, each a column (default 16 32 64)")
        add_table_flags(parser)
        parser.add_argument("--ws", type=float, nargs="+", default=[10.0, 1.0, 0.1],
                            help="length scales w of the positional encoding (default 10 1 0.1)")
        suite.add_png(parser, "a grid of queries and their nearest scenes")
        super().add_arguments(parser, name)

    merge = staticmethod(merge_files)

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        return run_spatial(args.data, bits=suite.lengths_of(args) or (16, 32, 64), png=args.png, seeds=seeds_of(args),
                           tuned=args.tuned, ws=args.ws, **self.settings(args))


class NeuroHashTuneSuite(_NeuroHashSuite):
    """``hashplug bench neurohash-tune``: NeuroHash's hyperplane stage chosen on a validation split."""

    names = ("neurohash-tune",)
    help = "NeuroHash's start, lr and loss weights chosen on validation scenes of held-out MNIST training digits"

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        suite.add_lengths(parser, "code length in bits (the first value; default 32)")
        suite.add_grid(parser, "NeuroHash parameter -> values (default "
                 + ", ".join(f"{k} {' '.join(map(str, v))}" for k, v in TUNE_GRID.items()) + ")")
        super().add_arguments(parser, name)

    def settings(self, args: argparse.Namespace) -> dict[str, Any]:
        kw = super().settings(args)
        if "n_db" not in kw:  # validation scenes: half the test sizes
            kw.update(n_db=5_000, n_q=500)
        return kw

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        grid = json.loads(args.grid) if args.grid else TUNE_GRID
        return run_tune(args.data, grid, bits=(suite.lengths_of(args) or [32])[0], **self.settings(args))


for _suite in (NeuroHashAblationSuite, NeuroHashSpatialSuite, NeuroHashTuneSuite):
    register_suite(_suite)


def bench_neurohash(args: argparse.Namespace) -> int:
    """CLI entry of ``hashplug bench neurohash-ablation | neurohash-spatial | neurohash-tune``."""
    from .suite import run_suite

    return run_suite(args.suite, args)
