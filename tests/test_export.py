"""ONNX export: graph translation, model card, parity with ``encoder.encode`` for every encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from sklearn.datasets import load_digits  # noqa: E402

from hashplug.encoders import ENCODERS, available_encoders, get_encoder, get_tags  # noqa: E402
from hashplug.encoders.base import BaseEncoder  # noqa: E402
from hashplug.export import build_model, check_parity, graph_model, read_metadata, to_onnx  # noqa: E402
from hashplug.graph import (  # noqa: E402
    Affine,
    Graph,
    KHot,
    L2Normalize,
    MatMul,
    Op,
    Sin,
)
from hashplug.modelcard import KEYS, ModelCard  # noqa: E402
from hashplug.runtime import OnnxEncoder  # noqa: E402
from hashplug.validation import HashplugError, ModelFileError, NotFittedError  # noqa: E402

MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist" / "mnist.npz"


# ---------------------------------------------------------------------------- tiny encoders
class _TinyDense(BaseEncoder):
    """Random projection through affine, l2_normalize, matmul, affine, sin; dense head."""

    method_name = "tiny_dense"
    code_kind = "dense"
    _array_attrs = ("W_", "mean_", "phase_")

    def __init__(self, n_units: int = 30, random_state: int = 0) -> None:
        self.n_units = n_units
        self.random_state = random_state

    def _fit(self, X: np.ndarray, y: Any) -> None:
        rng = np.random.default_rng(self.random_state)
        self.mean_ = X.mean(axis=0).astype(np.float32)
        self.W_ = rng.standard_normal((X.shape[1], self.n_units)).astype(np.float32)
        self.phase_ = rng.uniform(-1, 1, self.n_units).astype(np.float32)
        self.m_ = self.k_ = self.n_units

    def _ops(self) -> list[Op]:
        return [
            Affine(np.float32(0.5), -0.5 * self.mean_),
            L2Normalize(1e-12),
            MatMul(self.W_),
            Affine(np.float32(3.0), self.phase_),
            Sin(),
        ]


class _TinyKHot(BaseEncoder):
    """Random expansion + top-k; ``W`` can be given (for exact ties)."""

    method_name = "tiny_khot"
    code_kind = "khot"
    _array_attrs = ("W_",)

    def __init__(
        self,
        n_units: int = 50,
        n_active: int = 7,
        W: np.ndarray | None = None,
        normalize: bool = True,
        random_state: int = 0,
    ) -> None:
        self.n_units = n_units
        self.n_active = n_active
        self.W = W
        self.normalize = normalize
        self.random_state = random_state

    def _fit(self, X: np.ndarray, y: Any) -> None:
        if self.W is not None:
            self.W_ = np.asarray(self.W, dtype=np.float32)
        else:
            self.W_ = np.random.default_rng(self.random_state).standard_normal((X.shape[1], self.n_units))
            self.W_ = self.W_.astype(np.float32)
        self.m_, self.k_ = self.W_.shape[1], self.n_active

    def _ops(self) -> list[Op]:
        pre: list[Op] = [L2Normalize(1e-6)] if self.normalize else []
        return [*pre, MatMul(self.W_)]


# ---------------------------------------------------------------------------- data & registry
@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return (load_digits().data / 16.0).astype(np.float32)


@pytest.fixture(scope="module")
def digits_int() -> np.ndarray:
    return load_digits().data.astype(np.float32)  # integers 0..16


@pytest.fixture(scope="module")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    """MNIST as stored: 3,000 training and the 10,000 test images, pixel values 0..255, shape (n, 28, 28)."""
    if not MNIST.is_file():
        pytest.skip(f"MNIST not found at {MNIST}")
    with np.load(MNIST) as z:
        return z["x_train"][:3000].astype(np.float32), z["x_test"].astype(np.float32)


# encoders of arrays (vectors or images); structured ones have their own parity tests (tests/test_neurohash.py)
REGISTERED = [n for n in available_encoders() if get_tags(n).input_kind != "structured"]

# Small, fast settings per method (unknown keys are dropped, so a new encoder runs with its defaults).
SMALL = {
    "biohash": {"k": 8, "m": 96, "epochs": 2, "device": "cpu"},
    "naivebiohash": {"k": 16, "epochs": 2, "device": "cpu"},
    "flyhash": {"k": 16, "expansion": 2},
    "itq": {"k": 16, "n_iter": 10},
    "bioconvhash": {"k": 8, "m": 96, "n_filters": 16, "kernel_sizes": (3, 4), "kci": 3, "pool_size": 2,
                    "filter_epochs": 2, "n_patches": 3000, "epochs": 3, "lr": 0.1, "init": "data", "device": "cpu"},
    # the minibatch trainers: their default networks, trained briefly (parity is of the graph, not its quality)
    "mihash": {"epochs": 2, "device": "cpu"},
    "dpsh": {"epochs": 2, "device": "cpu"},
    "angulardistill": {"epochs": 2, "device": "cpu"},
}


def _as_input(name: str, X: np.ndarray) -> np.ndarray:
    """Flat digits (n, 64) as the encoder takes them: images (n, 8, 8) for encoders tagged ``images``."""
    return X.reshape(len(X), 8, 8) if get_tags(name).input_kind == "images" else X


def small_encoder(name: str) -> BaseEncoder:
    params = {"k": 16, "random_state": 0, **SMALL.get(name, {})}
    allowed = ENCODERS[name]._param_names()
    return get_encoder(name, **{key: v for key, v in params.items() if key in allowed})


def _expected_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Reference top-k with the lower-index tie rule, via a stable sort."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.sort(top, axis=1)


# ---------------------------------------------------------------------------- graph & checker
@pytest.mark.parametrize("opset", [13, 17, 18, 21])
@pytest.mark.parametrize("cls", [_TinyDense, _TinyKHot])
def test_checker_and_parity_across_opsets(cls, opset, digits, tmp_path):
    enc = cls().fit(digits)
    model = build_model(enc, opset=opset)
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain for o in model.opset_import} == {""}
    path = to_onnx(enc, tmp_path / f"m{opset}", opset=opset)
    assert path.suffix == ".onnx" and path.is_file()
    rep = check_parity(enc, path, digits)
    assert rep["identical"], rep
    assert rep["n_rows"] == len(digits)


def test_graph_io_signature(digits, tmp_path):
    enc = _TinyKHot().fit(digits.reshape(-1, 8, 8))
    model = onnx.load(to_onnx(enc, tmp_path / "k.onnx"))
    (inp,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "x" and dims == ["N", 8, 8]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    outs = {o.name: o for o in model.graph.output}
    assert set(outs) == {"packed", "indices"}
    assert outs["packed"].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert outs["indices"].type.tensor_type.elem_type == onnx.TensorProto.INT64
    dense = onnx.load(to_onnx(_TinyDense().fit(digits), tmp_path / "d.onnx"))
    assert [o.name for o in dense.graph.output] == ["packed"]


def test_unsupported_opset_and_unfitted(digits, tmp_path):
    with pytest.raises(HashplugError, match="opset"):
        build_model(_TinyDense().fit(digits), opset=9)
    with pytest.raises(NotFittedError):
        to_onnx(_TinyDense(), tmp_path / "x.onnx")


class _Relu(Op, register=False):
    """A test double: an op with numpy and shapes but no ONNX emitter (kept out of the op registry)."""

    name = "relu"

    def out_shape(self, s):
        return s

    def numpy(self, x):
        return np.maximum(x, np.float32(0))


def test_op_without_emitter_is_rejected(digits):
    enc = _TinyDense().fit(digits)
    enc._ops = lambda: [_Relu(), MatMul(enc.W_)]  # type: ignore[method-assign]
    assert enc.encode(digits).shape == (len(digits), 4)  # numpy runs it
    with pytest.raises(HashplugError, match=r"cannot export graph op _Relu \('relu'\): it has no ONNX emitter"):
        build_model(enc)


def test_encoder_graph_must_have_one_input_x_and_a_head(digits):
    enc = _TinyKHot().fit(digits)
    g = enc.graph
    for bad in (
        Graph({"y": (64,)}, [(MatMul(enc.W_), "y", "s")], KHot(3)),
        Graph(g.inputs, g.nodes, None),
    ):
        enc._build_graph = lambda bad=bad: bad  # type: ignore[method-assign]
        with pytest.raises(HashplugError, match="an encoder's graph needs a head and one input 'x'"):
            build_model(enc)


# ---------------------------------------------------------------------------- metadata
def test_metadata_round_trip(digits, tmp_path):
    enc = _TinyKHot().fit(digits)
    path = to_onnx(enc, tmp_path / "k.onnx")
    card = read_metadata(path)
    assert card.method == "tiny_khot" and card.code_kind == "khot"
    assert (card.m, card.k, card.n_bytes) == (50, 7, 7)
    assert card.input_shape == (64,) and card.input_dtype == "float32"
    assert card.bit_order == "packbits-big" and card.tie_rule == "lower-index"
    assert card.weights_sha256 == enc.weights_sha256()
    assert card.preprocessing == [
        {"op": "l2_normalize", "eps": 1e-6, "accumulate": "float32"},
        {"op": "matmul", "weight_shape": [64, 50], "accumulate": "float32"},
    ]
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert set(KEYS) <= set(props)
    assert ModelCard.from_metadata(props) == card
    assert ModelCard.from_metadata(card.to_metadata()) == card
    # the runtime reads the same card through onnxruntime
    assert OnnxEncoder(path).card == card


def _meta(**over: str) -> dict[str, str]:
    card = ModelCard(method="x", input_shape=(4, 4), m=20, k=5, code_kind="khot", weights_sha256="a" * 64)
    meta = card.to_metadata()
    for key, val in over.items():
        if val is None:
            meta.pop("hashplug." + key)
        else:
            meta["hashplug." + key] = val
    return meta


@pytest.mark.parametrize(
    ("over", "pattern"),
    [
        ({"m": None}, r"'hashplug\.m' is missing"),
        ({"weights_sha256": None}, r"'hashplug\.weights_sha256' is missing"),
        ({"input_shape": "[4, 4"}, r"'hashplug\.input_shape' is not valid JSON"),
        ({"input_shape": '"abc"'}, r"'hashplug\.input_shape' must be a JSON list"),
        ({"preprocessing": "{nope"}, r"'hashplug\.preprocessing' is not valid JSON"),
        ({"preprocessing": '[{"op": "conv"}]'}, r"'hashplug\.preprocessing'"),
        ({"k": "21"}, r"'hashplug\.k' must be in \[1, m=20\]"),
        ({"k": "five"}, r"'hashplug\.k' must be an integer"),
        ({"n_bytes": "2"}, r"'hashplug\.n_bytes'"),
        ({"code_kind": "ternary"}, r"'hashplug\.code_kind' is 'ternary'"),
        ({"code_kind": "dense"}, r"'hashplug\.k' must equal m=20 for dense"),
        ({"format": "hashplug-onnx/99"}, r"'hashplug\.format'"),
        ({"bit_order": "little"}, r"'hashplug\.bit_order'"),
        ({"tie_rule": "random"}, r"'hashplug\.tie_rule'"),
        ({"input_dtype": "float64"}, r"'hashplug\.input_dtype'"),
        ({"weights_sha256": "xyz"}, r"'hashplug\.weights_sha256'"),
    ],
)
def test_card_validation_names_key_and_file(over, pattern):
    with pytest.raises(ModelFileError, match=pattern) as info:
        ModelCard.from_metadata(_meta(**over), source="/models/enc.onnx")
    assert "/models/enc.onnx" in str(info.value)


def test_card_rejects_non_hashplug_metadata():
    with pytest.raises(ModelFileError, match="not a hashplug ONNX file"):
        ModelCard.from_metadata({"author": "someone"}, source="f.onnx")


# ---------------------------------------------------------------------------- ties
def test_ties_flyhash_like_integer_inputs(digits_int, tmp_path):
    """Binary weights on integer inputs give exactly tied integer scores; both sides take the lower index."""
    rng = np.random.default_rng(1)
    W = (rng.random((64, 200)) < 0.1).astype(np.float32)
    enc = _TinyKHot(n_active=12, W=W, normalize=False).fit(digits_int)
    scores = enc.graph.numpy(x=digits_int)
    srt = -np.sort(-scores, axis=1)
    tied_at_boundary = srt[:, 11] == srt[:, 12]
    assert tied_at_boundary.mean() > 0.2  # the test really exercises ties
    expected = _expected_indices(scores, 12)
    path = to_onnx(enc, tmp_path / "ties.onnx")
    onx = OnnxEncoder(path)
    np.testing.assert_array_equal(enc.encode(digits_int, layout="indices"), expected)
    np.testing.assert_array_equal(onx.encode(digits_int, layout="indices"), expected)
    np.testing.assert_array_equal(onx.encode(digits_int), enc.encode(digits_int))


def test_ties_all_equal_scores_pick_first_k(tmp_path):
    """Duplicated weight columns: every score equal -> units 0..k-1 on both sides.

    Inputs are small integers so every column's dot product is exact: with random floats, BLAS may sum
    identical columns in different orders (SIMD tail vs. body) and the scores are no longer all equal.
    """
    X = np.random.default_rng(0).integers(0, 17, (50, 10)).astype(np.float32)
    W = np.repeat(np.ones((10, 1), np.float32), 24, axis=1)
    enc = _TinyKHot(n_active=5, W=W, normalize=False).fit(X)
    onx = OnnxEncoder(to_onnx(enc, tmp_path / "eq.onnx"))
    want = np.tile(np.arange(5), (50, 1))
    np.testing.assert_array_equal(enc.encode(X, layout="indices"), want)
    np.testing.assert_array_equal(onx.encode(X, layout="indices"), want)


def test_dense_zero_score_is_bit_zero(tmp_path):
    """A score of exactly 0 is bit 0 (strict ``>``) on both sides; padding bits stay 0."""
    X = np.array([[1.0, -1.0], [2.0, 0.5], [0.0, 0.0]], np.float32)
    W = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, -1.0]], np.float32)  # unit0 = x0 + x1 is 0 on row 0

    class Lin(_TinyDense):
        def _fit(self, X, y):
            self.W_, self.mean_, self.phase_ = W, np.zeros(2, np.float32), np.zeros(3, np.float32)
            self.m_ = self.k_ = 3

        def _ops(self):
            return [MatMul(self.W_)]

    enc = Lin().fit(X)
    onx = OnnxEncoder(to_onnx(enc, tmp_path / "z.onnx"))
    want = np.packbits(np.array([[0, 0, 1], [1, 1, 1], [0, 0, 0]], bool), axis=1)
    np.testing.assert_array_equal(enc.encode(X), want)
    np.testing.assert_array_equal(onx.encode(X), want)


# ---------------------------------------------------------------------------- every registered encoder
def test_registry_is_not_empty():
    assert REGISTERED, "no encoders registered"


@pytest.mark.parametrize("name", REGISTERED)
def test_parity_registered_digits(name, digits, tmp_path):
    digits = _as_input(name, digits)
    enc = small_encoder(name).fit(digits)
    path = to_onnx(enc, tmp_path / f"{name}.onnx")
    rep = check_parity(enc, path, digits)
    assert rep["identical"], rep
    onx = OnnxEncoder(path)
    assert (onx.m, onx.k, onx.code_kind, onx.method_name) == (enc.m_, enc.k_, enc.code_kind, name)
    np.testing.assert_array_equal(onx.encode(digits, layout="pm1"), enc.encode(digits, layout="pm1"))


@pytest.mark.slow
@pytest.mark.parametrize("scale", ["pixels", "unit"])
@pytest.mark.parametrize("name", REGISTERED)
def test_parity_registered_mnist_10k(name, scale, mnist, tmp_path):
    """Bit-identical codes on the 10,000 MNIST test images (inputs of shape (n, 28, 28)).

    ``pixels``: the stored values 0..255; ``unit``: divided by 255.
    """
    Xtr, Xte = mnist
    if scale == "unit":
        Xtr, Xte = Xtr / np.float32(255), Xte / np.float32(255)
    enc = small_encoder(name).fit(Xtr)
    path = to_onnx(enc, tmp_path / f"{name}.onnx")
    rep = check_parity(enc, path, Xte)
    assert rep["n_rows"] == 10_000
    assert rep["identical"], rep


# ---------------------------------------------------------------------------- image graphs
class _TinyConv(BaseEncoder):
    """An image encoder through the conv ops: cosine of filters with normalised patches, per-location
    top-2, max-pool, flatten, k-hot head. Input (n, 1, 8, 8)."""

    method_name = "tiny_conv"
    code_kind = "khot"
    _array_attrs = ("W_",)

    def __init__(self, n_filters: int = 6, n_active: int = 5, random_state: int = 0) -> None:
        self.n_filters = n_filters
        self.n_active = n_active
        self.random_state = random_state

    def _fit(self, X: np.ndarray, y: Any) -> None:
        rng = np.random.default_rng(self.random_state)
        self.W_ = rng.standard_normal((self.n_filters, 1, 3, 3)).astype(np.float32)
        self.m_, self.k_ = self.n_filters * 4 * 4, self.n_active

    def _build_graph(self) -> Graph:
        from hashplug.graph import Conv2d, Flatten, MaxPool2d, Node, PatchL2Norm, SafeDiv, TopKPerLocation

        return Graph(
            {"x": self.input_shape_},
            [
                Node(Conv2d(self.W_, stride=1, padding=1), "x", "conv"),
                Node(PatchL2Norm(3, 1, 1), "x", "norm"),
                Node(SafeDiv(1e-6), ("conv", "norm"), "cos"),
                Node(TopKPerLocation(2), "cos", "sparse"),
                Node(MaxPool2d(2), "sparse", "pooled"),
                Node(Flatten(), "pooled", "scores"),
            ],
            KHot(self.k_),
        )


def test_image_graph_encoder_exports_with_parity(digits, tmp_path):
    X = digits.reshape(-1, 1, 8, 8)
    enc = _TinyConv().fit(X)
    assert enc.scores(X).shape == (len(X), 96)
    path = to_onnx(enc, tmp_path / "conv.onnx")
    card = read_metadata(path)
    assert card.input_shape == (1, 8, 8)
    assert [st["op"] for st in card.preprocessing] == [
        "conv2d", "patch_l2_norm", "safe_div", "topk_per_location", "max_pool2d", "flatten",
    ]  # fmt: skip
    rep = check_parity(enc, path, X)
    assert rep["identical"], rep
    np.testing.assert_array_equal(OnnxEncoder(path).encode(X, layout="indices"), enc.encode(X, layout="indices"))


def test_graph_model_of_a_graph_without_head(digits):
    """graph_model exports any graph: here the float scores themselves, several inputs."""
    ort = pytest.importorskip("onnxruntime")
    W = np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32)
    g = Graph({"a": (64,), "b": (10,)}, [(MatMul(W), "a", "p"), (Affine(2.0, 0.5), "p", "q")])
    from hashplug.graph import Mul, Node

    g = Graph(g.inputs, [*g.nodes, Node(Mul(), ("q", "b"), "out")])
    sess = ort.InferenceSession(graph_model(g).SerializeToString(), providers=["CPUExecutionProvider"])
    B = np.ones((len(digits), 10), np.float32) * 3
    (got,) = sess.run(["out"], {"a": digits, "b": B})
    np.testing.assert_allclose(got, g.numpy(a=digits, b=B), rtol=1e-5, atol=1e-5)
