"""The model is the whole contract (issue 27, items 6, 10, 11 and the model-side crashes).

* Item 6: ``hashplug train --scale`` is recorded in the model (a ``divide`` node in the graph and the card), so
  ``hashplug ingest`` without ``--scale`` stores the codes of ``X / scale``; a second scaling is refused.
* Item 10: ``OnnxEncoder`` verifies the file (``hashplug._onnx_wire``): tampered weights or card fields
  without a recomputed digest, ops hashplug never writes (``Loop``), foreign domains, outputs that disagree
  with the card, oversized and truncated files are refused; 0.1.0 files still load ("legacy").
* Item 11: NeuroHash's numpy ``encode`` and the ONNX path check a batch with one function (``_domains``).
* Crashes: ``to_onnx(None, p)``, ``load_encoder`` of a tampered ``.npz``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
sys.path.insert(0, str(Path(__file__).parent))

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import hashplug  # noqa: E402
from hashplug.cli import main  # noqa: E402
from hashplug.encoders import load_encoder  # noqa: E402
from hashplug.export import read_metadata, to_onnx  # noqa: E402
from hashplug.runtime import OnnxEncoder  # noqa: E402
from hashplug.validation import HashplugError, HashplugTypeError, ModelFileError  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "v0_1_0"
DIGEST_KEY = "hashplug.digest"


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    return d.data.astype(np.float32), d.target.astype(np.int64)


@pytest.fixture(scope="module")
def models(tmp_path_factory, digits):
    """An exported ITQ (dense) and FlyHash (k-hot) model."""
    X = digits[0] / np.float32(16)
    root = tmp_path_factory.mktemp("models")
    itq = hashplug.get_encoder("itq", k=16, random_state=0).fit(X)
    fly = hashplug.get_encoder("flyhash", k=8, expansion=4, random_state=0).fit(X)
    return {"itq": (itq, to_onnx(itq, root / "itq.onnx")), "fly": (fly, to_onnx(fly, root / "fly.onnx")), "X": X}


def _rewrite(src: Path, dst: Path, edit, *, seal: bool = False) -> Path:
    """Load ``src`` with onnx, apply ``edit(model)``, optionally recompute the digest, save as ``dst``."""
    model = onnx.load(str(src))
    edit(model)
    if seal:
        try:
            from hashplug.export.onnx_export import seal_model
        except ImportError:  # hashplug before issue 27 wrote no digest: the metadata is valid as it is
            seal_model = None
        if seal_model is not None:
            seal_model(model)
    onnx.save(model, str(dst))
    return dst


def _set_meta(key: str, value: str):
    def edit(model):
        for p in model.metadata_props:
            if p.key == key:
                p.value = value

    return edit


def _drop_digest(model) -> None:
    keep = [p for p in model.metadata_props if p.key != DIGEST_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)


def _negate_weight(model) -> None:
    for i, init in enumerate(model.graph.initializer):
        a = numpy_helper.to_array(init)
        if a.size > 16 and a.dtype.kind == "f":
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(-a, init.name))
            return
    raise AssertionError("no weight matrix found")


def _add_loop(model) -> None:
    """A Loop of 10**15 iterations with otherwise valid metadata, feeding the packed output (x 0 + packed)."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["v_in"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.UINT8, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.UINT8, [])],
    )
    model.graph.initializer.extend([numpy_helper.from_array(np.array(10**15, np.int64), "trip"),
                                    numpy_helper.from_array(np.array(True), "cond0"),
                                    numpy_helper.from_array(np.array(0, np.uint8), "v0")])
    for node in model.graph.node:  # the head's last node writes 'packed': make it write 'packed_pre'
        node.output[:] = ["packed_pre" if o == "packed" else o for o in node.output]
    model.graph.node.extend([helper.make_node("Loop", ["trip", "cond0", "v0"], ["v_final"], body=body),
                             helper.make_node("Add", ["packed_pre", "v_final"], ["packed"])])


# ------------------------------------------------------------------------------------------------ item 6
def test_train_scale_is_in_the_model_and_ingest_needs_no_scale(tmp_path, digits, capsys):
    """Before: `train --scale 255` left the scale out of the ONNX file; ingest without --scale stored the codes
    of the raw pixels (ITQ P@10 0.923 -> 0.775 in the issue), silently (here 1797 of 1797 rows differed)."""
    X = np.clip(digits[0] * 16, 0, 255).astype(np.uint8)  # 8-bit pixels
    data = tmp_path / "pixels.npz"
    np.savez(data, X=X, y=digits[1])
    npz, onx = tmp_path / "itq.npz", tmp_path / "itq.onnx"
    assert main(["train", "itq", "--data", str(data), "--k", "16", "--scale", "255", "--out", str(npz)]) == 0
    assert main(["export", str(npz), "--out", str(onx)]) == 0
    db = tmp_path / "db"
    assert main(["ingest", str(data), "--db", str(db), "--table", "t", "--model", str(onx)]) == 0
    import lancedb

    tb = lancedb.connect(str(db)).open_table("t").to_arrow().sort_by("id")
    stored = np.asarray(tb["code"].to_pylist(), np.uint8)
    # the encoder as `hashplug train` fits it (seed 0), on X / 255
    ref = hashplug.get_encoder("itq", k=16, random_state=0).fit(X.astype(np.float32) / np.float32(255))
    expect = ref.encode(X.astype(np.float32) / np.float32(255))
    assert (stored != expect).any(1).sum() == 0
    card = OnnxEncoder(onx).card
    assert card.input_divisor == 255.0 and card.preprocessing[0] == {"op": "divide", "divisor": 255.0}
    # a second scaling is refused everywhere it could happen, before anything is written
    capsys.readouterr()
    for argv in (["ingest", str(data), "--db", str(db), "--table", "t2", "--model", str(onx), "--scale", "255"],
                 ["search", "--db", str(db), "--table", "t", "--query", json.dumps(X[0].tolist()), "--scale", "255"],
                 ["eval", str(npz), "--data", str(data), "--scale", "255", "--per-class", "2"]):
        assert main(argv) == 2
        assert "twice" in capsys.readouterr().err
    assert lancedb.connect(str(db)).table_names() == ["t"]


def test_scale_must_be_finite_and_positive(tmp_path, digits, capsys):
    """Before: `--scale 0` meant no scaling, `--scale nan` made every input NaN."""
    data = tmp_path / "x.npy"
    np.save(data, digits[0][:200])
    for bad in ("0", "-1", "nan", "inf"):
        capsys.readouterr()
        assert main(["train", "lsh", "--data", str(data), "--k", "8", "--scale", bad, "--out", str(tmp_path / "m")]) == 2
        assert "--scale must be a finite number > 0" in capsys.readouterr().err
    assert not list(tmp_path.glob("m*"))


def test_divisor_survives_save_load_export_for_every_vector_encoder(tmp_path, digits):
    X = digits[0][:300]
    for name in ("lsh", "itq", "flyhash", "biohash"):
        enc = hashplug.get_encoder(name, k=8, random_state=0).fit(X / np.float32(16))
        ref = enc.encode(X / np.float32(16))
        enc.set_input_divisor(16)
        back = load_encoder(enc.save(tmp_path / f"{name}.npz"))
        onx = OnnxEncoder(to_onnx(back, tmp_path / f"{name}.onnx"))
        assert np.array_equal(back.encode(X), ref) and np.array_equal(onx.encode(X), ref), name
        assert back.fit(X / np.float32(16)).graph.describe()[0]["op"] != "divide"  # a new fit forgets it


# ------------------------------------------------------------------------------------------------ item 10
@pytest.mark.parametrize(
    "what, edit, seal, match",
    [
        ("negated weights", _negate_weight, False, "digest mismatch"),
        ("zeroed weights_sha256", _set_meta("hashplug.weights_sha256", "0" * 64), False, "digest mismatch"),
        ("relabelled method", _set_meta("hashplug.method", "biohash"), False, "digest mismatch"),
        ("m disagrees with the graph", lambda m: [_set_meta(k, v)(m) for k, v in  # same n_bytes: only the digest
                                                  (("hashplug.m", "15"), ("hashplug.k", "15"))], False, "digest mismatch"),
        ("Loop with valid metadata", _add_loop, True, r"control-flow op\(s\) \['Loop'\]"),
        ("foreign domain", lambda m: m.graph.node.append(helper.make_node("Evil", ["x"], ["y"], domain="com.evil")),
         True, "domain"),
        # without the digest (a 0.1.0-style file) the structural checks still hold
        ("m disagrees, no digest", lambda m: [_set_meta(k, v)(m) for k, v in
                                              (("hashplug.m", "24"), ("hashplug.k", "24"), ("hashplug.n_bytes", "3"))]
         + [_drop_digest(m)], False, r"card says uint8 \(N, 3\)"),
        ("Loop, no digest", lambda m: (_add_loop(m), _drop_digest(m)), False, "control-flow"),
    ],
)
def test_tampered_onnx_is_refused(models, tmp_path, what, edit, seal, match):
    """Before: each of these loaded (the Loop one then hung in encode)."""
    bad = _rewrite(models["itq"][1], tmp_path / "bad.onnx", edit, seal=seal)
    with pytest.raises(ModelFileError, match=match):
        OnnxEncoder(bad)
    with pytest.raises(ModelFileError, match=match):  # the same validator for every reader
        read_metadata(bad)


def test_size_cap_truncation_and_legacy_files(models, tmp_path):
    path = models["fly"][1]
    with pytest.raises(ModelFileError, match=r"over the limit of 1,000 \(max_bytes\)"):
        OnnxEncoder(path, max_bytes=1000)
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(Path(path).read_bytes()[:-200])
    with pytest.raises(ModelFileError, match="not a well-formed ONNX model"):
        OnnxEncoder(cut)
    assert OnnxEncoder(path).integrity == "digest"
    for f in ("itq_k16.onnx", "biohash_k4.onnx"):  # written by 0.1.0: no digest, every other check
        assert OnnxEncoder(FIXTURES / f).integrity == "legacy"


def test_allowed_ops_cover_what_hashplug_writes(models, tmp_path):
    """The op allow-list is what the emitters and the torch export of hashplug's networks write."""
    torch = pytest.importorskip("torch")
    from hashplug._onnx_wire import ALLOWED_OPS, parse_model
    from hashplug.export import export_module
    from hashplug.train.digit_cnn import build_digit_cnn

    seen = set()
    for _enc, path in (models["itq"], models["fly"]):
        seen |= {op for _, op in parse_model(Path(path).read_bytes()).ops}
    net = build_digit_cnn(width=8)

    class Backbone(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.fc = net, torch.nn.Linear(8, 16)

        def forward(self, x):
            return self.fc(self.net.features(x))

    for opset in (13, 22):
        p = export_module(Backbone(), tmp_path / f"cnn{opset}.onnx", (1, 8, 8), opset=opset)
        seen |= {op for _, op in parse_model(Path(p).read_bytes()).ops}
    assert seen <= ALLOWED_OPS
    src = "".join((Path(hashplug.__file__).parent.parent / "export" / f).read_text()
                  for f in ("onnx_ops.py", "onnx_export.py"))
    emitted = {op for op in ALLOWED_OPS if f'"{op}"' in src}
    assert ALLOWED_OPS - emitted <= seen  # every allowed op is emitted by hashplug or by its torch export


# ------------------------------------------------------------------------------------------------ item 11
@pytest.fixture(scope="module")
def neurohash(tmp_path_factory):
    pytest.importorskip("torch")
    from _encoders import FAST_PARAMS
    from test_neurohash import scene_batch

    X, y = scene_batch(120, 0)
    enc = hashplug.get_encoder("neurohash", **FAST_PARAMS["neurohash"], random_state=0).fit(X, y)
    return enc, OnnxEncoder(to_onnx(enc, tmp_path_factory.mktemp("nh") / "nh.onnx")), X


def _with(X, name, idx, value):
    out = {k: np.array(v, copy=True) for k, v in X.items()}
    out[name][idx] = value
    return out


@pytest.mark.parametrize(
    "what, change, match",
    [
        ("NaN position of a valid object", ("object_positions", (0, 0, 0), np.nan), "NaN or infinity at index"),
        ("object_mask 0.5", ("object_mask", (0, 0), 0.5), r"object_mask must hold only the values \[0, 1\]"),
        ("position 100", ("object_positions", (0, 0, 1), 100.0), r"object_positions must lie in \[-0.5, 1.5\]"),
    ],
)
def test_neurohash_numpy_and_onnx_refuse_alike(neurohash, what, change, match):
    """Before: numpy turned a valid object's NaN position into 0; ONNX accepted mask 0.5 and position 100."""
    enc, onx, X = neurohash
    assert X["object_mask"][0, 0] == 1
    bad = _with(X, *change)
    errors = []
    for f in (enc.encode, onx.encode):
        with pytest.raises(HashplugError, match=match) as info:
            f(bad)
        errors.append(type(info.value))
    assert errors[0] is errors[1]


def test_neurohash_nan_at_padding_is_allowed_on_both_paths(neurohash):
    enc, onx, X = neurohash
    pad = np.argwhere(X["object_mask"] == 0)[0]
    bad = _with(X, "object_positions", tuple(pad), np.nan)
    assert np.array_equal(enc.encode(bad), enc.encode(X))
    assert np.array_equal(onx.encode(bad), enc.encode(X))
    assert onx.card.input_domains["object_mask"]["values"] == [0, 1]


# ------------------------------------------------------------------------------------------------ crashes
def test_to_onnx_of_none_is_a_clear_error(tmp_path):
    """Before: AttributeError: 'NoneType' object has no attribute 'graph'."""
    with pytest.raises(HashplugTypeError, match="fitted hashplug encoder"):
        to_onnx(None, tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


def _tamper_npz(src: Path, dst: Path, header_edit=None, extra_array: str | None = None) -> Path:
    with np.load(src) as z:
        files = {k: z[k] for k in z.files}
    header = json.loads(files["__header__"].tobytes().decode())
    if header_edit:
        header_edit(header)
    files["__header__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    if extra_array:
        files[f"a__{extra_array}"] = np.zeros(3, np.float32)
        from hashplug._files import sha256_arrays

        header["sha256"] = sha256_arrays({k[3:]: v for k, v in files.items() if k.startswith("a__")})
        files["__header__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(dst, **files)
    return dst


@pytest.mark.parametrize(
    "what, header_edit, extra, match",
    [
        ("extra header attribute", lambda h: h["attrs"].update(encode="pwned_"), None, "does not save"),
        ("attribute shadowing a method", lambda h: h["attrs"].update(graph_=1), None, "does not save"),
        ("extra array", None, "evil_", "does not save"),
        ("invalid parameter", lambda h: h["params"].update(k=-3), None, "invalid parameters"),
        ("NaN divisor", lambda h: h["attrs"].update(input_divisor_=float("nan")), None, "input_divisor_"),
    ],
)
def test_tampered_npz_sets_nothing(models, tmp_path, what, header_edit, extra, match):
    """Before: load_encoder set any header attribute (and any array) on the instance."""
    enc = models["itq"][0]
    bad = _tamper_npz(enc.save(tmp_path / "m.npz"), tmp_path / "bad.npz", header_edit, extra)
    with pytest.raises(ModelFileError, match=match):
        load_encoder(bad)
