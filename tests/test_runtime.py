"""OnnxEncoder: serving an exported file with numpy + onnxruntime only."""

from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from sklearn.datasets import load_digits  # noqa: E402

import hashplug  # noqa: E402
from hashplug import runtime  # noqa: E402
from hashplug.encoders.base import BaseEncoder  # noqa: E402
from hashplug.export import to_onnx  # noqa: E402
from hashplug.graph import Affine, MatMul, Op  # noqa: E402
from hashplug.runtime import OnnxEncoder, clear_session_cache  # noqa: E402
from hashplug.validation import HashplugError, ModelFileError  # noqa: E402


class _Proj(BaseEncoder):
    """Centred random projection; ``n_active=None`` -> dense sign code, else k-hot top-k."""

    method_name = "tiny_proj"
    _array_attrs = ("W_", "mean_")

    def __init__(self, n_units: int = 40, n_active: int | None = None, random_state: int = 0) -> None:
        self.n_units = n_units
        self.n_active = n_active
        self.random_state = random_state

    @property
    def code_kind(self) -> str:  # type: ignore[override]
        return "dense" if self.n_active is None else "khot"

    def _fit(self, X: np.ndarray, y: Any) -> None:
        rng = np.random.default_rng(self.random_state)
        self.mean_ = X.mean(axis=0).astype(np.float32)
        self.W_ = rng.standard_normal((X.shape[1], self.n_units)).astype(np.float32)
        self.m_ = self.n_units
        self.k_ = self.n_units if self.n_active is None else self.n_active

    def _ops(self) -> list[Op]:
        return [Affine(np.float32(1.0), -self.mean_), MatMul(self.W_)]


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    """sklearn digits as images, shape (1797, 8, 8), float32."""
    return load_digits().data.reshape(-1, 8, 8).astype(np.float32)


@pytest.fixture(scope="module")
def dense(X, tmp_path_factory) -> tuple[_Proj, Path]:
    enc = _Proj(n_units=37).fit(X)
    return enc, to_onnx(enc, tmp_path_factory.mktemp("dense") / "dense.onnx")


@pytest.fixture(scope="module")
def khot(X, tmp_path_factory) -> tuple[_Proj, Path]:
    enc = _Proj(n_units=100, n_active=9).fit(X)
    return enc, to_onnx(enc, tmp_path_factory.mktemp("khot") / "khot.onnx")


# ---------------------------------------------------------------------------- contract
@pytest.mark.parametrize("which", ["dense", "khot"])
def test_encode_matches_encoder_in_every_format(which, X, request):
    enc, path = request.getfixturevalue(which)
    onx = OnnxEncoder(path)
    formats = ["packed", "pm1"] + (["indices"] if which == "khot" else [])
    for fmt in formats:
        want = enc.encode(X, format=fmt)
        got = onx.encode(X, format=fmt)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    packed = onx.encode(X)
    assert packed.dtype == np.uint8 and packed.shape == (len(X), (enc.m_ + 7) // 8)


def test_attributes(khot):
    enc, path = khot
    onx = OnnxEncoder(path)
    assert (onx.m, onx.k, onx.n_bytes, onx.code_kind) == (100, 9, 13, "khot")
    assert onx.input_shape == (8, 8) and onx.n_features_in_ == 64
    assert onx.path == path.resolve()
    assert onx.file_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert onx.weights_sha256 == enc.weights_sha256() == onx.card.weights_sha256
    assert onx.method_name == "tiny_proj"
    assert "OnnxEncoder(" in repr(onx) and "m=100" in repr(onx)
    assert hashplug.OnnxEncoder is OnnxEncoder


def test_flattened_and_integer_inputs(dense, X):
    enc, path = dense
    onx = OnnxEncoder(path)
    want = enc.encode(X)
    np.testing.assert_array_equal(onx.encode(X.reshape(len(X), -1)), want)
    np.testing.assert_array_equal(onx.encode(X.astype(np.int64)), want)  # digits are integers: exact cast
    np.testing.assert_array_equal(onx.encode(X.astype(np.float64).tolist()), want)


@pytest.mark.parametrize("n", [1, 1000])
def test_dynamic_batch(n, khot, X):
    enc, path = khot
    got = OnnxEncoder(path).encode(X[:n], layout="indices")
    assert got.shape == (n, 9)
    np.testing.assert_array_equal(got, enc.encode(X[:n], layout="indices"))


def test_chunking_is_invisible(khot, X):
    _, path = khot
    onx = OnnxEncoder(path)
    full = onx.encode(X, layout="indices")
    np.testing.assert_array_equal(onx.encode(X, layout="indices", batch_size=7), full)
    np.testing.assert_array_equal(OnnxEncoder(path, batch_size=100).encode(X, layout="indices"), full)


def test_runs_are_sized_by_the_cards_working_memory(khot, X, tmp_path):
    """The card carries the graph's working memory per row; the default run takes as many rows as fit
    ``RUN_BYTES`` (never 8,192 rows of a graph that needs megabytes per row), a given batch_size wins, the
    codes do not change, and a card without the key (an older file) keeps 8,192."""
    from hashplug._batching import rows_for
    from hashplug.modelcard import ModelCard

    enc, path = khot
    onx = OnnxEncoder(path)
    # by hand: input (8, 8), its flattened copy, Affine out 64, MatMul out 100 (float32), then the scores
    # and indices 100 x (4 + 8)
    assert [n.op.name for n in enc.graph.nodes] == ["flatten", "affine", "matmul"]
    assert enc.graph.work_bytes() == onx.card.work_bytes == 4 * 64 * 3 + 4 * 100 + 12 * 100
    assert onx.batch_size == 8192 == runtime.rows_per_run(onx.card)
    assert rows_for(10_000_000) == (1 << 30) // 10_000_000 == 107 and rows_for(1 << 40) == 1 and rows_for(0) == 8192
    assert OnnxEncoder(path, batch_size=5).batch_size == 5
    assert pickle.loads(pickle.dumps(onx)).batch_size == 8192
    # a model that needs 2 MB per row: runs of 512 rows, the same codes
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    props.pop("hashplug.digest", None)
    props["hashplug.work_bytes"] = str(2 * 1024 * 1024)
    onnx.helper.set_model_props(model, props)
    big = tmp_path / "big.onnx"
    onnx.save(model, str(big))
    heavy = OnnxEncoder(big)
    assert heavy.batch_size == 512 and pickle.loads(pickle.dumps(heavy)).batch_size == 512
    np.testing.assert_array_equal(heavy.encode(X), onx.encode(X))
    for bad in ("0", "-3", "many"):
        props["hashplug.work_bytes"] = bad
        onnx.helper.set_model_props(model, props)
        onnx.save(model, str(big))
        with pytest.raises(ModelFileError, match=r"big\.onnx.*'hashplug\.work_bytes'"):
            OnnxEncoder(big)
    props.pop("hashplug.work_bytes")
    assert ModelCard.from_metadata(props).work_bytes == 0
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(big))
    assert OnnxEncoder(big).batch_size == 8192


# ---------------------------------------------------------------------------- input errors
def test_input_errors(dense, khot, X):
    onx = OnnxEncoder(dense[1])
    with pytest.raises(HashplugError, match=r"per-sample shape \(63,\).*\(8, 8\).*64 flattened"):
        onx.encode(X.reshape(len(X), -1)[:, :63])
    with pytest.raises(HashplugError, match=r"per-sample shape \(8, 9\)"):
        onx.encode(np.zeros((3, 8, 9), np.float32))
    bad = X[:5].copy()
    bad[2, 3, 4] = np.nan
    with pytest.raises(HashplugError, match=r"NaN or infinity.*\(2, 3, 4\)"):
        onx.encode(bad)
    with pytest.raises(HashplugError, match="empty batch"):
        onx.encode(np.zeros((0, 8, 8), np.float32))
    with pytest.raises(HashplugError, match="reshape"):
        onx.encode(np.zeros(64, np.float32))
    with pytest.raises(HashplugError, match="numeric"):
        onx.encode(np.array([["a"] * 64]))
    with pytest.raises(HashplugError, match="only for k-hot"):
        onx.encode(X, layout="indices")
    with pytest.raises(HashplugError, match="Unknown code format"):
        onx.encode(X, format="bits")
    with pytest.raises(HashplugError, match="batch_size"):
        OnnxEncoder(khot[1], batch_size=0)


# ---------------------------------------------------------------------------- file errors
def test_missing_file(tmp_path):
    path = tmp_path / "nope.onnx"
    with pytest.raises(ModelFileError, match="nope.onnx"):
        OnnxEncoder(path)
    with pytest.raises(ModelFileError, match="not a file"):
        OnnxEncoder(tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_file(damage, dense, tmp_path):
    data = dense[1].read_bytes()
    path = tmp_path / f"{damage}.onnx"
    path.write_bytes(b"\x00not an onnx model" * 50 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=f"{damage}.onnx.*could not be loaded") as info:
        OnnxEncoder(path)
    assert str(path) in str(info.value)


def _identity_model(meta: dict[str, str] | None = None, shape: list[int] | None = None) -> Any:
    from onnx import TensorProto, helper

    shape = shape or ["N", 64]
    g = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["packed"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("packed", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    if meta:
        helper.set_model_props(model, meta)
    return model


def test_non_hashplug_onnx(tmp_path):
    path = tmp_path / "foreign.onnx"
    onnx.save(_identity_model({"author": "someone"}), str(path))
    with pytest.raises(ModelFileError, match=r"foreign\.onnx.*not a hashplug ONNX file"):
        OnnxEncoder(path)


def test_tampered_metadata(dense, tmp_path):
    model = onnx.load(str(dense[1]))
    props = {p.key: p.value for p in model.metadata_props}
    # without the digest (a 0.1.0-style file; with it, the digest refuses the edit first), the signature check
    props.pop("hashplug.digest", None)
    # a consistent card that does not match the graph's input
    props["hashplug.input_shape"] = "[64]"
    onnx.helper.set_model_props(model, props)
    path = tmp_path / "shape.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelFileError, match=r"shape\.onnx.*does not match metadata input_shape"):
        OnnxEncoder(path)
    # an inconsistent card
    props["hashplug.input_shape"] = "[8, 8]"
    props["hashplug.n_bytes"] = "99"
    onnx.helper.set_model_props(model, props)
    path = tmp_path / "nbytes.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelFileError, match=r"nbytes\.onnx.*'hashplug\.n_bytes'"):
        OnnxEncoder(path)


def test_khot_card_without_indices_output(khot, tmp_path):
    meta = {p.key: p.value for p in onnx.load(str(khot[1])).metadata_props}
    meta["hashplug.input_shape"] = "[64]"
    path = tmp_path / "noidx.onnx"
    onnx.save(_identity_model(meta), str(path))
    with pytest.raises(ModelFileError, match=r"lacks outputs \['indices'\]"):
        OnnxEncoder(path)


# ---------------------------------------------------------------------------- session cache
def test_session_cached_per_file_content(X, tmp_path):
    clear_session_cache()
    path = tmp_path / "m.onnx"
    a = _Proj(n_units=16, random_state=1).fit(X)
    to_onnx(a, path)
    e1, e2 = OnnxEncoder(path), OnnxEncoder(str(path))
    assert e1._session is e2._session
    assert len(runtime._SESSIONS) == 1
    # rewriting the file (new content) gives a new session and the new codes
    b = _Proj(n_units=16, random_state=2).fit(X)
    to_onnx(b, path)
    e3 = OnnxEncoder(path)
    assert e3._session is not e1._session and e3.file_sha256 != e1.file_sha256
    assert len(runtime._SESSIONS) == 1  # the stale session was dropped from the cache
    np.testing.assert_array_equal(e3.encode(X), b.encode(X))
    np.testing.assert_array_equal(e1.encode(X), a.encode(X))  # old objects keep their session


def test_thread_safety(khot, X):
    clear_session_cache()
    enc, path = khot
    want = enc.encode(X, layout="indices")
    chunks = [(s, s + 60) for s in range(0, len(X), 60)]

    def work(bounds: tuple[int, int]) -> tuple[int, np.ndarray, int]:
        onx = OnnxEncoder(path)  # rebuilt on every call, like LanceDB does
        lo, hi = bounds
        return lo, onx.encode(X[lo:hi], layout="indices"), id(onx._session)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, chunks * 4))
    for lo, got, _ in results:
        np.testing.assert_array_equal(got, want[lo : lo + len(got)])
    assert len({sid for _, _, sid in results}) == 1
    assert len(runtime._SESSIONS) == 1


def test_pickle_round_trip(khot, X):
    _, path = khot
    onx = OnnxEncoder(path, batch_size=50)
    clone = pickle.loads(pickle.dumps(onx))
    assert clone.batch_size == 50 and clone.card == onx.card
    np.testing.assert_array_equal(clone.encode(X[:20]), onx.encode(X[:20]))


@pytest.mark.parametrize("providers", [None, "auto", "CPUExecutionProvider", ["CPUExecutionProvider"]])
def test_providers(providers, dense, X):
    enc, path = dense
    onx = OnnxEncoder(path, providers=providers)
    assert onx.providers[-1] == "CPUExecutionProvider"
    np.testing.assert_array_equal(onx.encode(X[:10]), enc.encode(X[:10]))


# ---------------------------------------------------------------------------- serving imports nothing heavy
def test_runtime_imports_neither_torch_nor_onnx(khot, X, tmp_path):
    enc, path = khot
    np.save(tmp_path / "x.npy", X[:50])
    np.save(tmp_path / "want.npy", enc.encode(X[:50]))
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from hashplug.runtime import OnnxEncoder
        import hashplug
        onx = hashplug.OnnxEncoder({str(path)!r})
        got = onx.encode(np.load({str(tmp_path / "x.npy")!r}))
        assert (got == np.load({str(tmp_path / "want.npy")!r})).all()
        heavy = [m for m in ("torch", "onnx", "hashplug.export") if m in sys.modules]
        assert not heavy, heavy
        print("ok")
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_sessions_run_every_graph_optimisation_without_spinning_threads(khot, X):
    """Every session hashplug opens (OnnxEncoder and onnx_session) gets runtime.session_options(): all graph
    optimisations, intra-op threads that sleep between ops (a spinning pool burns a shared machine's cores)."""
    import onnxruntime as ort

    enc, path = khot
    opts = runtime.session_options()
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    onx = OnnxEncoder(path)
    plain = runtime.onnx_session(path)
    for sess in (onx._session, plain):
        got = sess.get_session_options()
        assert got.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        assert got.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    xs = X[:50]  # (50, 8, 8) float32, the model's input shape
    np.testing.assert_array_equal(onx.encode(xs), enc.encode(xs))
    np.testing.assert_array_equal(plain.run(["packed"], {"x": xs})[0], enc.encode(xs))
