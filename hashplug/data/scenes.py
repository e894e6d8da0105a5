"""Spatial scenes: real MNIST digits placed on a canvas, with boxes, and two object detectors.

An offline stand-in for MS COCO + Detectron2 in NeuroHash (spatially-aware image hashing, section III-B):
each scene holds a few real MNIST digits at random positions and scales, optionally over a dimmed CIFAR-10
image, with the ground-truth box, class and centre of every digit.

Object convention (padded arrays, one row per image, ``K = max_objects`` slots per row):

- ``labels`` int64 ``(n, K)``: class of each object; -1 where there is no object, and also -1 for a detected
  object of unknown class (a detector without classes);
- ``boxes`` int64 ``(n, K, 4)``: pixel boxes ``[x0, y0, x1, y1)`` (``x1``, ``y1`` exclusive), -1 at padding;
- ``centres`` float64 ``(n, K, 2)``: box centres ``(x, y)`` normalised to [0, 1] by image width and height,
  NaN at padding;
- ``valid`` bool ``(n, K)``: True where an object exists (the only reliable "is there an object" flag).

Contents:

- :class:`Scenes` and :func:`make_scenes`: build a dataset from MNIST digits (and CIFAR-10 backgrounds);
- :func:`crop_objects`: crop every box to a square ``size x size`` patch (the per-object images ``I_k``);
- :class:`GroundTruthDetector`, :class:`ConnectedComponentsDetector`: ``detector(images) -> (boxes, valid,
  labels)``;
- :func:`match_boxes`: recall and precision of detected boxes at an IoU threshold.

numpy only at import time; :class:`ConnectedComponentsDetector` needs scipy
(``pip install 'hashplug[train]'``).

Example
-------
>>> import numpy as np
>>> from hashplug.data.scenes import ConnectedComponentsDetector, make_scenes, match_boxes
>>> rng = np.random.default_rng(0)
>>> digits = np.zeros((10, 28, 28), np.uint8)
>>> for i in range(10):
...     digits[i, 6:22, 8 + i // 2 : 18 + i // 2] = 255
>>> scenes = make_scenes(digits, np.arange(10), 50, canvas=64, max_objects=3, seed=0)
>>> scenes.images.shape, scenes.boxes.shape
((50, 64, 64), (50, 3, 4))
>>> boxes, valid, labels = ConnectedComponentsDetector(max_objects=3)(scenes.images)
>>> recall, precision = match_boxes(boxes, valid, scenes.boxes, scenes.valid)
>>> bool(recall > 0.9)
True
"""

from __future__ import annotations

import functools
import hashlib
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..validation import HashplugError, check_array, check_float_param, check_int_param

__all__ = [
    "Scenes",
    "make_scenes",
    "crop_objects",
    "GroundTruthDetector",
    "ConnectedComponentsDetector",
    "OnnxDetector",
    "match_boxes",
    "box_iou",
    "scene_inputs",
]

_DIGIT_SHAPE = (28, 28)


# ---------------------------------------------------------------------------------------------------------
# the dataset


@dataclass(frozen=True, eq=False)
class Scenes:
    """A spatial-scenes dataset: images with the padded per-object arrays of the module's convention.

    Attributes
    ----------
    images : ndarray of shape (n, H, W), or (n, 3, H, W) with a colour background, dtype uint8
        Pixels 0-255; ``H == W == canvas``. Colour images are channels first (R, G, B).
    labels : ndarray of shape (n, K), dtype int64
        Class (digit 0-9) of each object; -1 at padding.
    boxes : ndarray of shape (n, K, 4), dtype int64
        Ink bounding box of each digit on the canvas, ``[x0, y0, x1, y1)`` with exclusive ends; -1 at padding.
    centres : ndarray of shape (n, K, 2), dtype float64
        Box centres ``((x0 + x1) / 2 / canvas, (y0 + y1) / 2 / canvas)`` in [0, 1]; NaN at padding.
    valid : ndarray of shape (n, K), dtype bool
        True where a slot holds an object. Objects fill the first slots of a row, in placement order.
    digit_index : ndarray of shape (n, K), dtype int64
        Index of each object's source digit in the ``digits`` array given to :func:`make_scenes`; -1 at
        padding.
    canvas : int
        Image side in pixels.
    seed : int
        Seed :func:`make_scenes` was called with.
    background : ndarray of shape (n,), dtype int64, or None
        Index of each scene's background image in the ``background`` array given to :func:`make_scenes`;
        None when the scenes have a black background (grayscale images).
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    centres: np.ndarray
    valid: np.ndarray
    digit_index: np.ndarray
    canvas: int
    seed: int
    background: np.ndarray | None = None

    def __post_init__(self) -> None:
        imgs = self.images
        if not isinstance(imgs, np.ndarray) or imgs.dtype != np.uint8 or imgs.ndim not in (3, 4):
            raise HashplugError(
                f"Scenes: images must be a uint8 array of shape (n, H, W) or (n, 3, H, W); got "
                f"{getattr(imgs, 'dtype', type(imgs).__name__)} {getattr(imgs, 'shape', '')}."
            )
        n = imgs.shape[0]
        k = np.shape(self.labels)[1] if np.ndim(self.labels) == 2 else -1
        expected = {
            "labels": ((n, k), np.int64),
            "boxes": ((n, k, 4), np.int64),
            "centres": ((n, k, 2), np.float64),
            "valid": ((n, k), np.bool_),
            "digit_index": ((n, k), np.int64),
        }
        for name, (shape, dtype) in expected.items():
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.shape != shape or arr.dtype != dtype:
                raise HashplugError(
                    f"Scenes: {name} must be a {np.dtype(dtype).name} array of shape {shape} (n images, K "
                    f"object slots); got {getattr(arr, 'dtype', type(arr).__name__)} "
                    f"{getattr(arr, 'shape', '')}."
                )
        if self.background is not None and (
            not isinstance(self.background, np.ndarray)
            or self.background.shape != (n,)
            or self.background.dtype != np.int64
        ):
            raise HashplugError(
                f"Scenes: background must be None or an int64 array of shape ({n},); got "
                f"{getattr(self.background, 'dtype', type(self.background).__name__)} "
                f"{getattr(self.background, 'shape', '')}."
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def max_objects(self) -> int:
        """Number of object slots ``K`` per image."""
        return int(self.labels.shape[1])

    def subset(self, idx: Any) -> Scenes:
        """The scenes ``idx`` (integer indices, a boolean mask or a slice), as a new :class:`Scenes`.

        Parameters
        ----------
        idx : array-like of int, array-like of bool of shape (n,), or slice
            Which scenes to keep, in that order.

        Returns
        -------
        scenes : Scenes
            Same ``canvas``, ``seed`` and number of slots; arrays are copies.
        """
        try:
            rows = np.arange(len(self))[idx]
        except (IndexError, TypeError, ValueError) as exc:
            raise HashplugError(
                f"Scenes.subset: idx must be integer indices in [-{len(self)}, {len(self) - 1}], a boolean "
                f"mask of length {len(self)} or a slice; got {idx!r:.80} ({exc})."
            ) from exc
        if rows.ndim != 1:
            raise HashplugError(
                f"Scenes.subset: idx must select a 1-D list of scenes; got an index of shape {rows.shape}. "
                "Pass a flat list of indices."
            )
        return replace(
            self,
            images=self.images[rows],
            labels=self.labels[rows],
            boxes=self.boxes[rows],
            centres=self.centres[rows],
            valid=self.valid[rows],
            digit_index=self.digit_index[rows],
            background=None if self.background is None else self.background[rows],
        )

    def multilabel(self, n_classes: int = 10) -> np.ndarray:
        """Indicator matrix of the classes present in each scene.

        Parameters
        ----------
        n_classes : int
            Number of classes (columns).

        Returns
        -------
        Y : ndarray of shape (n, n_classes), dtype uint8
            ``Y[i, c] = 1`` when scene ``i`` holds at least one object of class ``c``.
        """
        n_classes = check_int_param(n_classes, "n_classes", "Scenes.multilabel", 1)
        known = self.valid & (self.labels >= 0)
        if known.any() and int(self.labels[known].max()) >= n_classes:
            raise HashplugError(
                f"Scenes.multilabel: the scenes hold class {int(self.labels[known].max())}, but n_classes is "
                f"{n_classes}; pass n_classes > {int(self.labels[known].max())}."
            )
        Y = np.zeros((len(self), n_classes), dtype=np.uint8)
        rows, slots = np.nonzero(known)
        Y[rows, self.labels[rows, slots]] = 1
        return Y


# ---------------------------------------------------------------------------------------------------------
# resampling (numpy): separable triangle-filter weights, i.e. bilinear with antialiasing when shrinking


@functools.lru_cache(maxsize=1024)
def _resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Weights ``(n_out, n_in)`` float64 resampling ``n_in`` pixels to ``n_out`` (edges clamped).

    Pillow-style bilinear: a triangle filter, widened to the scale factor when shrinking (antialiasing);
    the identity when ``n_in == n_out``. Read-only (cached).
    """
    if n_in == n_out:
        w = np.eye(n_in)
    else:
        scale = n_in / n_out
        support = max(scale, 1.0)
        src = (np.arange(n_out) + 0.5) * scale
        w = np.clip(1.0 - np.abs(np.arange(n_in)[None, :] + 0.5 - src[:, None]) / support, 0.0, None)
        w /= w.sum(axis=1, keepdims=True)
    w.flags.writeable = False
    return w


def _crop_matrix(lo: int, hi: int, centre: float, factor: float, size: int) -> np.ndarray:
    """Weights ``(size, hi - lo)`` sampling source pixels ``lo..hi-1``, zero outside them.

    Output pixel ``u`` samples source coordinate ``centre + (u + 0.5 - size / 2) / factor`` with a triangle
    filter of support ``max(1, 1 / factor)``; weights are normalised over the whole (zero-padded) line, so the
    padding contributes zeros instead of stretching the edge pixels.
    """
    support = max(1.0, 1.0 / factor)
    src = centre + (np.arange(size) + 0.5 - size / 2) / factor
    start = min(lo, math.floor(src[0] - support) - 1)
    stop = max(hi, math.ceil(src[-1] + support) + 1)
    j = np.arange(start, stop)
    w = np.clip(1.0 - np.abs(j[None, :] + 0.5 - src[:, None]) / support, 0.0, None)
    w /= w.sum(axis=1, keepdims=True)
    return w[:, lo - start : hi - start]


def _ink_box(img: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` of the nonzero pixels of a 2-D image, or None when it is blank."""
    cols = np.flatnonzero(img.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(img.any(axis=1))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------
# making scenes


def _check_scale(scale: Any) -> tuple[float, float]:
    if isinstance(scale, numbers.Real) and not isinstance(scale, bool):
        scale = (scale, scale)
    ok = (
        isinstance(scale, Sequence)
        and len(scale) == 2
        and all(isinstance(s, numbers.Real) and not isinstance(s, bool) and np.isfinite(s) for s in scale)
    )
    if not ok or not (0 < scale[0] <= scale[1]):
        raise HashplugError(
            f"The 'scale' parameter of make_scenes must be a pair (low, high) with 0 < low <= high (or one "
            f"positive number); got {scale!r}. Example: scale=(0.8, 1.2)."
        )
    return float(scale[0]), float(scale[1])


def _check_background(background: Any) -> np.ndarray:
    bg = check_array(background, name="background", ndim=4, dtype=None, owner="make_scenes")
    if bg.dtype != np.uint8 or bg.shape[1] != 3:
        hint = (
            " load_cifar10 returns (n, 32, 32, 3): pass X.transpose(0, 3, 1, 2)."
            if bg.shape[-1] == 3 and bg.shape[1] != 3
            else ""
        )
        raise HashplugError(
            f"make_scenes: background must be uint8 colour images of shape (m, 3, h, w), channels first; got "
            f"{bg.dtype} {bg.shape}.{hint}"
        )
    return bg


def make_scenes(
    digits: Any,
    digit_labels: Any,
    n: int,
    *,
    canvas: int = 64,
    min_objects: int = 1,
    max_objects: int = 4,
    scale: tuple[float, float] | float = (0.8, 1.2),
    max_overlap: float = 0.0,
    min_gap: int = 3,
    max_tries: int = 50,
    background: Any = None,
    background_dim: float = 0.5,
    seed: int = 0,
) -> Scenes:
    """Place random real MNIST digits on black (or dimmed CIFAR-10) canvases, with their boxes.

    For each scene: draw ``k`` uniformly in ``[min_objects, max_objects]`` and ``k`` digits uniformly (with
    replacement) from ``digits``. Each digit is cropped to its ink bounding box (pixels > 0), resized by a
    factor drawn uniformly in ``scale`` (bilinear with antialiasing, numpy; capped so the digit fits the
    canvas) and put at a uniformly random position. A position is redrawn, up to ``max_tries`` times, when
    its box grown by ``min_gap`` pixels on every side has IoU > ``max_overlap`` with a box already placed;
    after that the digit is dropped, so a scene can hold fewer than ``k`` (even fewer than ``min_objects``)
    digits, but always at least one. Digits are composited by pixel-wise max. The recorded box is the ink
    bounding box of the pasted (resized) digit.

    With ``background``, each scene draws a random background image, resizes it to the canvas (bilinear, per
    channel), multiplies it by ``background_dim`` (rounding down) and composites the digits by max into all
    three channels, so the images are ``(n, 3, canvas, canvas)``.

    Parameters
    ----------
    digits : array-like of shape (m, 28, 28), dtype uint8
        Source digits (e.g. ``load_mnist()[0]``); each must have some ink (a pixel > 0).
    digit_labels : array-like of shape (m,), integer
        Class of each digit, >= 0.
    n : int
        Number of scenes, >= 1.
    canvas : int
        Image side in pixels, >= 28.
    min_objects, max_objects : int
        Range of the number of digits drawn per scene, ``1 <= min_objects <= max_objects``; ``max_objects``
        is also the number of slots ``K`` of the padded arrays.
    scale : (float, float) or float
        Range of the resize factor of a digit's ink crop (a number: a fixed factor; 1: no resizing).
    max_overlap : float in [0, 1]
        Largest IoU allowed between a new digit's grown box (see ``min_gap``) and a placed digit's box.
        0 (default): boxes never overlap, so each digit's ink is separate from the others (what a
        connected-components detector needs).
    min_gap : int
        Pixels each new box is grown by, on every side, for the overlap test, >= 0. With ``max_overlap=0``
        two boxes are at least ``min_gap`` pixels apart; the default 3 keeps two digits separate after the
        one 3x3 dilation of :class:`ConnectedComponentsDetector` (``min_gap >= 2 * dilate + 1``). 0: the
        plain box IoU.
    max_tries : int
        Positions tried per digit before it is dropped, >= 1.
    background : array-like of shape (mb, 3, h, w), dtype uint8, or None
        Colour background images, channels first (CIFAR-10: ``load_cifar10()[0].transpose(0, 3, 1, 2)``).
        None: black background and grayscale images.
    background_dim : float in [0, 1]
        Factor applied to the background pixels (0.5: backgrounds stay <= 127, below the digits' strokes).
    seed : int
        Seed of the random generator; the same arguments and seed give the same scenes.

    Returns
    -------
    scenes : Scenes
        ``images`` uint8 of shape (n, canvas, canvas), or (n, 3, canvas, canvas) with a background; the
        object arrays have ``K = max_objects`` slots.
    """
    who = "make_scenes"
    n = check_int_param(n, "n", who, 1)
    canvas = check_int_param(canvas, "canvas", who, 28)
    max_objects = check_int_param(max_objects, "max_objects", who, 1)
    min_objects = check_int_param(
        min_objects, "min_objects", who, 1, max_objects, range_text=f"[1, max_objects={max_objects}]"
    )
    max_tries = check_int_param(max_tries, "max_tries", who, 1)
    min_gap = check_int_param(min_gap, "min_gap", who, 0)
    max_overlap = check_float_param(max_overlap, "max_overlap", who, 0.0, 1.0)
    background_dim = check_float_param(background_dim, "background_dim", who, 0.0, 1.0)
    seed = check_int_param(seed, "seed", who, 0)
    lo_s, hi_s = _check_scale(scale)

    X = check_array(digits, name="digits", ndim=3, shape_tail=_DIGIT_SHAPE, dtype=None, owner=who)
    if X.dtype != np.uint8:
        raise HashplugError(
            f"make_scenes: digits must be uint8 pixels 0-255 (as load_mnist returns); got dtype {X.dtype}. "
            "Convert with np.clip(x, 0, 255).astype(np.uint8)."
        )
    m = X.shape[0]
    y = check_array(digit_labels, name="digit_labels", ndim=1, dtype=None, owner=who)
    if not np.issubdtype(y.dtype, np.integer) or y.shape[0] != m or (y < 0).any():
        raise HashplugError(
            f"make_scenes: digit_labels must hold one integer class >= 0 per digit, shape ({m},); got "
            f"{y.dtype} {y.shape}" + (f" with minimum {int(y.min())}" if y.size else "") + "."
        )
    y = y.astype(np.int64)
    blank = np.flatnonzero(~X.reshape(m, -1).any(axis=1))
    if blank.size:
        raise HashplugError(
            f"make_scenes: {blank.size} digit(s) have no ink (all pixels 0), first at index {int(blank[0])}; "
            "drop them, e.g. digits[digits.reshape(len(digits), -1).any(1)]."
        )
    bg = None if background is None else _check_background(background)

    rng = np.random.default_rng(seed)
    K = max_objects
    gray = np.zeros((n, canvas, canvas), dtype=np.uint8)
    labels = np.full((n, K), -1, dtype=np.int64)
    boxes = np.full((n, K, 4), -1, dtype=np.int64)
    digit_index = np.full((n, K), -1, dtype=np.int64)
    valid = np.zeros((n, K), dtype=bool)

    for i in range(n):
        k = int(rng.integers(min_objects, max_objects + 1))
        picks = rng.integers(0, m, size=k)
        factors = rng.uniform(lo_s, hi_s, size=k)
        placed: list[tuple[int, int, int, int]] = []
        for d, f in zip(picks.tolist(), factors.tolist()):
            patch = _place_patch(X[d], f, canvas)
            h, w = patch.shape
            for _ in range(max_tries):
                x0 = int(rng.integers(0, canvas - w + 1))
                y0 = int(rng.integers(0, canvas - h + 1))
                box = (x0, y0, x0 + w, y0 + h)
                grown = (x0 - min_gap, y0 - min_gap, x0 + w + min_gap, y0 + h + min_gap)
                if not placed or _max_iou(grown, placed) <= max_overlap:
                    break
            else:
                continue  # no free position: drop this digit
            j = len(placed)
            placed.append(box)
            region = gray[i, y0 : y0 + h, x0 : x0 + w]
            np.maximum(region, patch, out=region)
            boxes[i, j] = box
            labels[i, j] = y[d]
            digit_index[i, j] = d
            valid[i, j] = True

    centres = np.full((n, K, 2), np.nan, dtype=np.float64)
    centres[valid] = (boxes[valid][:, 0:2] + boxes[valid][:, 2:4]) / (2.0 * canvas)

    if bg is None:
        images, bg_index = gray, None
    else:
        bg_index = rng.integers(0, bg.shape[0], size=n).astype(np.int64)
        ry = _resample_matrix(bg.shape[2], canvas)
        rx = _resample_matrix(bg.shape[3], canvas)
        images = np.empty((n, 3, canvas, canvas), dtype=np.uint8)
        for start in range(0, n, 256):  # chunks bound the float64 temporary
            sl = slice(start, min(start + 256, n))
            up = ry @ bg[bg_index[sl]].astype(np.float64) @ rx.T
            dimmed = np.floor(np.clip(up, 0, 255) * background_dim).astype(np.uint8)
            images[sl] = np.maximum(dimmed, gray[sl, None])

    return Scenes(
        images=images,
        labels=labels,
        boxes=boxes,
        centres=centres,
        valid=valid,
        digit_index=digit_index,
        canvas=canvas,
        seed=seed,
        background=bg_index,
    )


def _place_patch(digit: np.ndarray, factor: float, canvas: int) -> np.ndarray:
    """The digit's ink crop resized by ``factor`` (capped to fit the canvas), trimmed to its ink."""
    x0, y0, x1, y1 = _ink_box(digit)  # type: ignore[misc]  # digits are checked non-blank
    crop = digit[y0:y1, x0:x1]
    h, w = crop.shape
    factor = min(factor, canvas / max(h, w))
    nh, nw = max(1, min(canvas, round(h * factor))), max(1, min(canvas, round(w * factor)))
    if (nh, nw) == (h, w):
        return crop
    patch = _to_uint8(_resample_matrix(h, nh) @ crop.astype(np.float64) @ _resample_matrix(w, nw).T)
    ink = _ink_box(patch)
    if ink is None:  # a faint digit shrunk to nothing: keep its original size
        return crop
    return patch[ink[1] : ink[3], ink[0] : ink[2]]


def _max_iou(box: tuple[int, int, int, int], others: list[tuple[int, int, int, int]]) -> float:
    o = np.asarray(others, dtype=np.int64)
    iw = np.clip(np.minimum(box[2], o[:, 2]) - np.maximum(box[0], o[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], o[:, 3]) - np.maximum(box[1], o[:, 1]), 0, None)
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    union = area + (o[:, 2] - o[:, 0]) * (o[:, 3] - o[:, 1]) - inter
    return float((inter / union).max())


# ---------------------------------------------------------------------------------------------------------
# shared input checks


def _check_images(images: Any, owner: str) -> np.ndarray:
    imgs = check_array(images, name="images", ndim=(3, 4), dtype=None, owner=owner)
    if imgs.dtype != np.uint8:
        raise HashplugError(
            f"{owner}: images must be uint8 pixels 0-255 of shape (n, H, W) or (n, C, H, W); got dtype "
            f"{imgs.dtype}. Convert [0, 1] floats with np.rint(x * 255).astype(np.uint8)."
        )
    return imgs


def _check_boxes(
    boxes: Any,
    valid: Any,
    owner: str,
    prefix: str = "",
    n: int | None = None,
    hw: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Check ``boxes`` (n, K, 4) integers and ``valid`` (n, K) bool; valid boxes non-empty, inside ``hw``."""
    bname, vname = f"{prefix}boxes", f"{prefix}valid"
    b = check_array(boxes, name=bname, ndim=3, dtype=None, owner=owner, allow_empty=True)
    if not np.issubdtype(b.dtype, np.integer) or b.shape[2] != 4:
        raise HashplugError(
            f"{owner}: {bname} must be integer pixel boxes of shape (n, K, 4); got {b.dtype} {b.shape}."
        )
    v = check_array(valid, name=vname, ndim=2, dtype=None, owner=owner, allow_empty=True)
    if v.dtype != np.bool_ or v.shape != b.shape[:2]:
        raise HashplugError(
            f"{owner}: {vname} must be a bool array of shape {b.shape[:2]} (one flag per box); got "
            f"{v.dtype} {v.shape}."
        )
    if n is not None and b.shape[0] != n:
        raise HashplugError(
            f"{owner}: {bname} has {b.shape[0]} rows but there are {n} images; pass one per image."
        )
    b = b.astype(np.int64)
    x0, y0, x1, y1 = (b[..., c] for c in range(4))
    bad = v & ((x1 <= x0) | (y1 <= y0) | (x0 < 0) | (y0 < 0))
    if hw is not None:
        bad |= v & ((x1 > hw[1]) | (y1 > hw[0]))
    if bad.any():
        i, j = (int(t) for t in np.argwhere(bad)[0])
        where = "" if hw is None else f" inside the {hw[1]}x{hw[0]} image"
        raise HashplugError(
            f"{owner}: {bname}[{i}, {j}] = {b[i, j].tolist()} is not a non-empty [x0, y0, x1, y1) "
            f"box{where}; fix the box or set {vname}[{i}, {j}] = False."
        )
    return b, v


# ---------------------------------------------------------------------------------------------------------
# crops


def crop_objects(images: Any, boxes: Any, valid: Any, size: int = 28, pad: int = 2) -> np.ndarray:
    """Crop every valid box to a square ``size x size`` patch, keeping its aspect ratio.

    The box is centred in a zero-padded square and resized (bilinear, antialiased when shrinking) so that its
    longer side spans ``size - 2 * pad`` output pixels: ``pad`` is the black margin, in output pixels, on the
    longer side (MNIST itself is ``size=28, pad=4``: a 20-pixel digit in a 28-pixel square). Only the box's
    pixels are used; the rest of the square is zero. A box whose longer side already is ``size - 2 * pad``
    is copied without resampling (when its centre falls on the pixel grid).

    Parameters
    ----------
    images : array-like of shape (n, H, W) or (n, C, H, W), dtype uint8
        Pixels 0-255, channels first for colour images.
    boxes : array-like of shape (n, K, 4), integer
        ``[x0, y0, x1, y1)`` pixel boxes (exclusive ends); only the valid ones are read.
    valid : array-like of shape (n, K), dtype bool
        Which slots hold an object.
    size : int
        Side of the output patches, >= 1.
    pad : int
        Margin in output pixels, ``0 <= pad`` and ``2 * pad < size``.

    Returns
    -------
    crops : ndarray of shape (n, K, C, size, size), dtype float32
        Values in [0, 1] (pixels / 255); ``C = 1`` for grayscale images; zeros at invalid slots.
    """
    who = "crop_objects"
    imgs = _check_images(images, who)
    size = check_int_param(size, "size", who, 1)
    pad = check_int_param(
        pad, "pad", who, 0, (size - 1) // 2, range_text=f"[0, (size - 1) // 2 = {(size - 1) // 2}]"
    )
    if imgs.ndim == 3:
        imgs = imgs[:, None]
    n, C, H, W = imgs.shape
    b, v = _check_boxes(boxes, valid, who, n=n, hw=(H, W))
    out = np.zeros((n, b.shape[1], C, size, size), dtype=np.float32)
    inner = size - 2 * pad
    for i, j in np.argwhere(v).tolist():
        x0, y0, x1, y1 = b[i, j].tolist()
        factor = inner / max(x1 - x0, y1 - y0)
        wy = _crop_matrix(y0, y1, (y0 + y1) / 2, factor, size)
        wx = _crop_matrix(x0, x1, (x0 + x1) / 2, factor, size)
        patch = imgs[i, :, y0:y1, x0:x1].astype(np.float64)
        out[i, j] = np.einsum("uy,cyx,vx->cuv", wy, patch, wx, optimize=True) / 255.0
    np.clip(out, 0.0, 1.0, out=out)
    return out


# ---------------------------------------------------------------------------------------------------------
# detectors


def _fingerprint(images: np.ndarray) -> str:
    """A cheap digest of a batch: its shape and every image's pixel sum (catches other data, reordering)."""
    sums = images.reshape(images.shape[0], -1).sum(axis=1, dtype=np.int64)
    h = hashlib.blake2b(repr(images.shape).encode(), digest_size=16)
    h.update(sums.tobytes())
    return h.hexdigest()


class GroundTruthDetector:
    """The recorded boxes and labels of a :class:`Scenes` (an oracle detector).

    Parameters
    ----------
    scenes : Scenes
        The scenes whose images this detector is called with.

    Examples
    --------
    >>> boxes, valid, labels = GroundTruthDetector(scenes)(scenes.images)  # doctest: +SKIP
    """

    def __init__(self, scenes: Scenes) -> None:
        if not isinstance(scenes, Scenes):
            raise HashplugError(
                "GroundTruthDetector: scenes must be a Scenes (from make_scenes); got "
                f"{type(scenes).__name__}."
            )
        self.scenes = scenes
        self.max_objects = scenes.max_objects
        self._fingerprint = _fingerprint(scenes.images)

    def __call__(self, images: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the scenes' boxes, valid mask and labels after checking ``images`` are the scenes' images.

        Parameters
        ----------
        images : ndarray of shape (n, H, W) or (n, 3, H, W), dtype uint8
            Exactly ``scenes.images`` (same shape, same per-image pixel sums, same order).

        Returns
        -------
        boxes : ndarray of shape (n, K, 4), dtype int64
        valid : ndarray of shape (n, K), dtype bool
        labels : ndarray of shape (n, K), dtype int64
            Copies of the recorded arrays.
        """
        imgs = _check_images(images, "GroundTruthDetector")
        s = self.scenes
        if imgs.shape != s.images.shape or _fingerprint(imgs) != self._fingerprint:
            raise HashplugError(
                f"GroundTruthDetector: the images (shape {imgs.shape}) are not the scenes' images (shape "
                f"{s.images.shape}, or different pixels / order); call it with scenes.images, or build "
                "GroundTruthDetector(scenes.subset(idx)) for a subset."
            )
        return s.boxes.copy(), s.valid.copy(), s.labels.copy()


def _import_ndimage() -> Any:
    try:
        from scipy import ndimage
    except ImportError as exc:  # pragma: no cover - scipy is a training extra
        raise ImportError(
            "ConnectedComponentsDetector needs scipy: pip install 'hashplug[train]' (or pip install scipy)."
        ) from exc
    return ndimage


class ConnectedComponentsDetector:
    """Class-agnostic detector: the bounding boxes of the bright connected blobs of an image.

    Per image: take the max over channels (colour images; digits are composited into every channel),
    threshold (``pixel > threshold``), dilate the mask ``dilate`` times with a 3x3 square (so a digit with a
    broken stroke stays one component), label the 8-connected components (scipy.ndimage), and box each
    component's thresholded pixels (the dilation joins pieces but does not grow the box). Components with
    fewer than ``min_area`` thresholded pixels are dropped, the ``max_objects`` largest are kept and sorted by
    ``x0`` then ``y0``.

    Parameters
    ----------
    threshold : int in [0, 254]
        Ink is ``pixel > threshold``. 127 (default) ignores a background dimmed by
        ``make_scenes(background_dim=0.5)`` (<= 127) and keeps the digits' strokes.
    min_area : int
        Smallest component kept, in thresholded pixels, >= 1.
    max_objects : int
        Number of slots ``K`` of the output, >= 1.
    dilate : int
        Number of 3x3 binary dilations before labelling, >= 0 (0: none).
    """

    def __init__(
        self, threshold: int = 127, min_area: int = 12, max_objects: int = 4, dilate: int = 1
    ) -> None:
        who = "ConnectedComponentsDetector"
        self.threshold = check_int_param(threshold, "threshold", who, 0, 254)
        self.min_area = check_int_param(min_area, "min_area", who, 1)
        self.max_objects = check_int_param(max_objects, "max_objects", who, 1)
        self.dilate = check_int_param(dilate, "dilate", who, 0)
        _import_ndimage()

    def __repr__(self) -> str:
        return (
            f"ConnectedComponentsDetector(threshold={self.threshold}, min_area={self.min_area}, "
            f"max_objects={self.max_objects}, dilate={self.dilate})"
        )

    def __call__(self, images: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Detect the blobs of each image.

        Parameters
        ----------
        images : array-like of shape (n, H, W) or (n, C, H, W), dtype uint8
            Pixels 0-255, channels first for colour images.

        Returns
        -------
        boxes : ndarray of shape (n, max_objects, 4), dtype int64
            ``[x0, y0, x1, y1)`` boxes sorted by ``x0`` then ``y0``; -1 at padding.
        valid : ndarray of shape (n, max_objects), dtype bool
            True where a blob was found.
        labels : ndarray of shape (n, max_objects), dtype int64
            All -1 (the detector has no classes).
        """
        ndimage = _import_ndimage()
        imgs = _check_images(images, "ConnectedComponentsDetector")
        gray = imgs.max(axis=1) if imgs.ndim == 4 else imgs
        n, K = gray.shape[0], self.max_objects
        boxes = np.full((n, K, 4), -1, dtype=np.int64)
        valid = np.zeros((n, K), dtype=bool)
        labels = np.full((n, K), -1, dtype=np.int64)
        eight = np.ones((3, 3), dtype=bool)
        masks = gray > self.threshold
        for i in range(n):
            mask = masks[i]
            joined = ndimage.binary_dilation(mask, eight, iterations=self.dilate) if self.dilate else mask
            lab, count = ndimage.label(joined, structure=eight)
            if count == 0:
                continue
            lab = np.where(mask, lab, 0)  # box the ink, not its dilation
            areas = np.bincount(lab.ravel(), minlength=count + 1)[1:]
            found = []
            for c, sl in enumerate(ndimage.find_objects(lab, max_label=count)):
                if sl is not None and areas[c] >= self.min_area:
                    found.append((int(areas[c]), sl[1].start, sl[0].start, sl[1].stop, sl[0].stop))
            found.sort(key=lambda t: -t[0])  # stable: ties keep label (raster) order
            kept = sorted(found[:K], key=lambda t: (t[1], t[2]))
            for j, (_, x0, y0, x1, y1) in enumerate(kept):
                boxes[i, j] = (x0, y0, x1, y1)
                valid[i, j] = True
        return boxes, valid, labels


class OnnxDetector:
    """An object detector given as an ONNX file, run by onnxruntime, in this module's padded convention.

    The model takes the images as float32 ``(n, C, H, W)`` in [0, 1] (its first input) and returns, by output
    name, ``boxes`` (n, R, 4) as ``[x0, y0, x1, y1]`` in pixels, ``scores`` (n, R) and optionally ``labels``
    (n, R) integer classes (the layout torchvision-style detectors are exported to, batched and padded).
    Boxes scoring at least ``score_threshold`` are kept, the ``max_objects`` best, then sorted by ``x0``,
    ``y0``; coordinates are rounded to whole pixels and clipped to the image.

    Parameters
    ----------
    path : str or Path
    score_threshold : float in [0, 1]
    max_objects : int >= 1
    channels : {1, 3}
        What the model takes: grayscale images are repeated to 3 channels, colour images reduced by their
        channel maximum to 1.
    """

    def __init__(self, path: Any, score_threshold: float = 0.5, max_objects: int = 4, channels: int = 1) -> None:
        from ..runtime import onnx_session

        who = "OnnxDetector"
        self.path = str(path)
        self.score_threshold = check_float_param(score_threshold, "score_threshold", who, 0.0, 1.0)
        self.max_objects = check_int_param(max_objects, "max_objects", who, 1)
        if channels not in (1, 3):
            raise HashplugError(f"The 'channels' parameter of OnnxDetector must be 1 or 3. Got {channels!r} instead.")
        self.channels = int(channels)
        try:
            self._sess = onnx_session(self.path, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise HashplugError(f"OnnxDetector: {self.path!r} could not be loaded by onnxruntime ({exc}).") from None
        outs = {o.name for o in self._sess.get_outputs()}
        if not {"boxes", "scores"} <= outs:
            raise HashplugError(
                f"OnnxDetector: {self.path!r} has outputs {sorted(outs)}; it needs 'boxes' (n, R, 4) and 'scores' (n, R) "
                "(and optionally 'labels')."
            )
        self._has_labels = "labels" in outs
        self._input = self._sess.get_inputs()[0].name

    def __call__(self, images: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        imgs = _check_images(images, "OnnxDetector")
        x = (imgs[:, None] if imgs.ndim == 3 else imgs).astype(np.float32) / 255.0
        if self.channels == 3 and x.shape[1] == 1:
            x = np.repeat(x, 3, axis=1)
        elif self.channels == 1 and x.shape[1] == 3:
            x = x.max(axis=1, keepdims=True)
        names = ["boxes", "scores", *(["labels"] if self._has_labels else [])]
        res = dict(zip(names, self._sess.run(names, {self._input: x})))
        b = np.asarray(res["boxes"], dtype=np.float64)
        sc = np.asarray(res["scores"], dtype=np.float64)
        n, H, W, K = x.shape[0], x.shape[2], x.shape[3], self.max_objects
        if b.ndim != 3 or b.shape[0] != n or b.shape[2] != 4 or sc.shape != b.shape[:2]:
            raise HashplugError(
                f"OnnxDetector: the model returned boxes {b.shape} and scores {sc.shape}; expected (n, R, 4) and (n, R)."
            )
        lab_in = np.asarray(res["labels"], dtype=np.int64) if self._has_labels else np.full(sc.shape, -1, np.int64)
        boxes = np.full((n, K, 4), -1, dtype=np.int64)
        valid = np.zeros((n, K), dtype=bool)
        labels = np.full((n, K), -1, dtype=np.int64)
        for i in range(n):
            keep = np.flatnonzero(np.isfinite(sc[i]) & (sc[i] >= self.score_threshold))
            keep = keep[np.argsort(-sc[i][keep], kind="stable")][:K]
            bx = np.rint(b[i][keep]).astype(np.int64)
            bx[:, [0, 2]] = np.clip(bx[:, [0, 2]], 0, W)
            bx[:, [1, 3]] = np.clip(bx[:, [1, 3]], 0, H)
            ok = (bx[:, 2] > bx[:, 0]) & (bx[:, 3] > bx[:, 1])
            bx, kl = bx[ok], lab_in[i][keep][ok]
            order = np.lexsort((bx[:, 1], bx[:, 0]))
            boxes[i, : len(order)] = bx[order]
            valid[i, : len(order)] = True
            labels[i, : len(order)] = kl[order]
        return boxes, valid, labels


# ---------------------------------------------------------------------------------------------------------
# evaluation


def box_iou(a: Any, b: Any) -> np.ndarray:
    """Pairwise IoU of two batches of ``[x0, y0, x1, y1)`` boxes.

    Parameters
    ----------
    a : array-like of shape (..., P, 4)
    b : array-like of shape (..., T, 4)
        Boxes with exclusive ends; leading axes broadcast.

    Returns
    -------
    iou : ndarray of shape (..., P, T), dtype float64
        0 where the union is empty.
    """
    a = np.asarray(a, dtype=np.float64)[..., :, None, :]
    b = np.asarray(b, dtype=np.float64)[..., None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_boxes(
    pred_boxes: Any, pred_valid: Any, true_boxes: Any, true_valid: Any, iou: float = 0.5
) -> tuple[float, float]:
    """Recall and precision of detected boxes against true boxes, one-to-one at an IoU threshold.

    Per image, pairs are matched greedily by decreasing IoU (each true and each predicted box at most once);
    a pair counts when its IoU is >= ``iou``.

    Parameters
    ----------
    pred_boxes : array-like of shape (n, P, 4), integer
    pred_valid : array-like of shape (n, P), dtype bool
        Detections in the padded convention.
    true_boxes : array-like of shape (n, T, 4), integer
    true_valid : array-like of shape (n, T), dtype bool
        Ground truth in the padded convention (``P`` and ``T`` may differ).
    iou : float in (0, 1]
        Smallest IoU of a match.

    Returns
    -------
    recall : float
        Matched true boxes / valid true boxes (NaN when there are none).
    precision : float
        Matched detections / valid detections (NaN when there are none).
    """
    who = "match_boxes"
    iou = check_float_param(iou, "iou", who, 0.0, 1.0, low_open=True)
    pb, pv = _check_boxes(pred_boxes, pred_valid, who, prefix="pred_")
    tb, tv = _check_boxes(true_boxes, true_valid, who, prefix="true_")
    if pb.shape[0] != tb.shape[0]:
        raise HashplugError(
            f"{who}: pred_boxes has {pb.shape[0]} images but true_boxes has {tb.shape[0]}; pass the "
            "detections and the ground truth of the same images."
        )
    M = box_iou(pb, tb)
    M[~(pv[:, :, None] & tv[:, None, :])] = -1.0
    rows = np.arange(M.shape[0])
    matched = 0
    for _ in range(min(M.shape[1], M.shape[2])):
        flat = M.reshape(M.shape[0], -1).argmax(axis=1)
        p, t = np.unravel_index(flat, M.shape[1:])
        ok = M[rows, p, t] >= iou
        if not ok.any():
            break
        matched += int(ok.sum())
        M[rows[ok], p[ok], :] = -1.0
        M[rows[ok], :, t[ok]] = -1.0
    n_true, n_pred = int(tv.sum()), int(pv.sum())
    recall = matched / n_true if n_true else float("nan")
    precision = matched / n_pred if n_pred else float("nan")
    return recall, precision


# ---------------------------------------------------------------------------------------------------------
# images -> the named inputs of NeuroHash


def _onnx_image_encoder(path: str) -> Any:
    """An onnxruntime session as ``f(images float32 (n, C, H, W)) -> (n, z)`` (input named by the file); the
    session comes from the runtime's one session factory (:func:`hashplug.runtime.onnx_session`)."""
    from ..runtime import onnx_session

    sess = onnx_session(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    return run


def scene_inputs(
    images: Any,
    image_encoder: Any,
    detector: Any,
    *,
    crop_size: int = 28,
    pad: int = 4,
    batch_size: int = 1024,
) -> dict[str, np.ndarray]:
    """Run an image encoder and an object detector over images: NeuroHash's named inputs.

    Parameters
    ----------
    images : ndarray of shape (n, H, W) or (n, C, H, W), dtype uint8
    image_encoder : callable or str or Path
        ``f(x) -> (n, z)`` on float32 images ``(n, 1, h, w)`` in [0, 1] (colour reduced by channel maximum),
        or the path of an ONNX file with that signature (run by onnxruntime), e.g. the digit CNN written
        by :func:`hashplug.train.digit_cnn.export_image_encoder`. The same encoder embeds the whole image
        and every object crop.
    detector : callable
        ``detector(images) -> (boxes, valid, labels)`` in this module's padded convention:
        :class:`GroundTruthDetector`, :class:`ConnectedComponentsDetector`, an ONNX detector wrapped by
        :class:`OnnxDetector`, or any callable of that signature.
    crop_size, pad : int
        Object crops are ``crop_size`` squares with a ``pad`` margin (:func:`crop_objects`).

    Returns
    -------
    inputs : dict of str to ndarray
        ``global_features`` (n, z), ``object_features`` (n, K, z), ``object_positions`` (n, K, 2) (box centres
        / image size, 0 at padding), ``object_mask`` (n, K) float32, and ``object_labels`` (n, K) int64 (the
        detector's classes, -1 when it has none: pass it to ``NeuroHash.fit`` as ``y`` only when it has
        classes, and drop it before encoding).
    """
    imgs = _check_images(images, "scene_inputs")
    enc = _onnx_image_encoder(str(image_encoder)) if isinstance(image_encoder, (str, bytes)) or hasattr(
        image_encoder, "__fspath__") else image_encoder
    boxes, valid, labels = detector(imgs)
    n = imgs.shape[0]
    H, W = imgs.shape[-2:]
    gray = imgs if imgs.ndim == 3 else imgs.max(axis=1)

    def embed(x: np.ndarray) -> np.ndarray:
        parts = [np.asarray(enc(x[s : s + batch_size]), dtype=np.float32) for s in range(0, x.shape[0], batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    g = embed(gray[:, None].astype(np.float32) / 255.0)
    crops = crop_objects(gray, boxes, valid, size=crop_size, pad=pad)  # (n, K, 1, s, s)
    K = crops.shape[1]
    z = g.shape[1]
    f = np.zeros((n, K, z), np.float32)
    if valid.any():
        f[valid] = embed(crops[valid])
    b = np.asarray(boxes, dtype=np.float64)
    centres = np.stack([(b[..., 0] + b[..., 2]) / 2 / W, (b[..., 1] + b[..., 3]) / 2 / H], axis=-1)
    centres[~valid] = 0.0
    return {
        "global_features": g,
        "object_features": f,
        "object_positions": centres.astype(np.float32),
        "object_mask": valid.astype(np.float32),
        "object_labels": np.where(valid, labels, -1).astype(np.int64),
    }
