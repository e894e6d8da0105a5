"""Bad-input catalogue, area ``model``: OnnxEncoder, to_onnx / export_module, load_encoder / save, the encode
paths (numpy and ONNX, NeuroHash's named inputs) and ``hashplug train / eval / export`` (and ``--scale`` on the
serving commands). Each case checks the exception and message and that nothing stored changed (issue 27)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _catalogue import Case, check_case, make_world  # noqa: E402

import hashplug  # noqa: E402
from hashplug.validation import (  # noqa: E402
    HashplugError,
    HashplugTypeError,
    ModelFileError,
    ModelNotFoundError,
    NotFittedError,
)

onnx = pytest.importorskip("onnx")
pytest.importorskip("torch")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from hashplug.encoders import load_encoder  # noqa: E402
from hashplug.export import export_module, to_onnx  # noqa: E402
from hashplug.export.onnx_export import graph_model, seal_model  # noqa: E402
from hashplug.runtime import OnnxEncoder  # noqa: E402


def _edit_onnx(src: Path, dst: Path, edit, seal: bool = True) -> Path:
    model = onnx.load(str(src))
    edit(model)
    if seal:  # recompute the digest: only the other checks can refuse the file
        seal_model(model)
    onnx.save(model, str(dst))
    return dst


def _meta(**kv):
    def edit(model):
        for p in model.metadata_props:
            key = p.key.removeprefix("hashplug.")
            if key in kv:
                p.value = kv[key]

    return edit


def _negate(model) -> None:
    for i, init in enumerate(model.graph.initializer):
        a = numpy_helper.to_array(init)
        if a.size > 16 and a.dtype.kind == "f":
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(-a, init.name))
            return


def _node(op: str, domain: str = "", **attrs):
    def edit(model):
        model.graph.node.append(helper.make_node(op, ["x"], [f"unused_{op}"], domain=domain, **attrs))

    return edit


def _loop(model) -> None:
    body = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["c2"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("c2", TensorProto.BOOL, [])],
    )
    model.graph.initializer.extend([numpy_helper.from_array(np.array(10**15, np.int64), "trip"),
                                    numpy_helper.from_array(np.array(True), "cond0")])
    model.graph.node.append(helper.make_node("Loop", ["trip", "cond0"], [], body=body))


def _external(model) -> None:
    init = model.graph.initializer[0]
    init.ClearField("raw_data")
    init.data_location = TensorProto.EXTERNAL
    e = init.external_data.add()
    e.key, e.value = "location", "/etc/passwd"


def _function(model) -> None:
    model.functions.append(helper.make_function("custom", "f", ["a"], ["b"], [helper.make_node("Identity", ["a"], ["b"])],
                                                [helper.make_opsetid("", 17)]))


def _subgraph_attr(model) -> None:
    g = helper.make_graph([], "g", [], [])
    model.graph.node[0].attribute.append(helper.make_attribute("body", g))


def _tamper_npz(src: Path, dst: Path, header_edit=None, extra_array: bool = False) -> Path:
    from hashplug._files import sha256_arrays

    with np.load(src) as z:
        files = {k: z[k] for k in z.files}
    header = json.loads(files["__header__"].tobytes().decode())
    if header_edit:
        header_edit(header)
    if extra_array:
        files["a__evil_"] = np.zeros(3, np.float32)
        header["sha256"] = sha256_arrays({k[3:]: v for k, v in files.items() if k.startswith("a__")})
    files["__header__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(dst, **files)
    return dst


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = make_world(tmp_path_factory.mktemp("world"))
    h = tmp_path_factory.mktemp("hostile")  # hostile inputs, built once, outside the world
    X = w.X
    lsh = hashplug.get_encoder("lsh", k=32, random_state=0).fit(X)
    scaled = hashplug.get_encoder("lsh", k=16, random_state=0).fit(X).set_input_divisor(16)
    np.save(h / "x.npy", X[:200] * 16)
    np.savez(h / "xy.npz", X=X * 16, y=w.y)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"vector": pa.array(list(X[:20] * 16), pa.list_(pa.float32(), 64))}), h / "x.parquet")
    truncated = h / "trunc.onnx"
    truncated.write_bytes(Path(w.lsh_path).read_bytes()[:-300])
    (h / "empty.onnx").write_bytes(b"")
    (h / "dir.onnx").mkdir()
    onnx.save(graph_model(lsh.graph), str(h / "plain.onnx"))
    npz_trunc = h / "trunc.npz"
    npz_trunc.write_bytes(lsh.save(h / "lsh.npz").read_bytes()[:-100])
    from _encoders import FAST_PARAMS
    from test_neurohash import scene_batch

    S, sy = scene_batch(60, 0)
    nh = hashplug.get_encoder("neurohash", **FAST_PARAMS["neurohash"], random_state=0).fit(S, sy)
    w.extra.update(
        h=h, lsh=lsh, X=X, S=S, nh=nh, nh_onnx=OnnxEncoder(to_onnx(nh, h / "nh.onnx")),
        lsh_onx=OnnxEncoder(w.lsh_path), fly_onx=OnnxEncoder(w.fly_path),
        scaled_npz=scaled.save(h / "scaled.npz"), scaled_onnx=to_onnx(scaled, h / "scaled.onnx"),
        negated=_edit_onnx(w.lsh_path, h / "neg.onnx", _negate, seal=False),
        zero_sha=_edit_onnx(w.lsh_path, h / "zero.onnx", _meta(weights_sha256="0" * 64), seal=False),
        relabel=_edit_onnx(w.lsh_path, h / "relabel.onnx", _meta(method="biohash"), seal=False),
        m_changed=_edit_onnx(w.lsh_path, h / "m.onnx", _meta(m="31", k="31"), seal=False),
        m_legacy=_edit_onnx(w.lsh_path, h / "m_legacy.onnx", lambda m: (_meta(m="40", k="40", n_bytes="5")(m),
                                                                         _strip_digest(m)), seal=False),
        bad_digest=_edit_onnx(w.lsh_path, h / "bad_digest.onnx", _meta(digest="zz"), seal=False),
        loop=_edit_onnx(w.lsh_path, h / "loop.onnx", _loop),
        if_op=_edit_onnx(w.lsh_path, h / "if.onnx", _node("If")),
        scan=_edit_onnx(w.lsh_path, h / "scan.onnx", lambda m: (_node("Scan")(m), _strip_digest(m)), seal=False),
        domain=_edit_onnx(w.lsh_path, h / "domain.onnx", _node("Relu", domain="com.evil")),
        random=_edit_onnx(w.lsh_path, h / "random.onnx", _node("RandomUniformLike")),
        external=_edit_onnx(w.lsh_path, h / "external.onnx", _external),
        function=_edit_onnx(w.lsh_path, h / "function.onnx", _function),
        subgraph=_edit_onnx(w.lsh_path, h / "subgraph.onnx", _subgraph_attr),
        npz_extra_attr=_tamper_npz(h / "lsh.npz", h / "attr.npz", lambda hd: hd["attrs"].update(encode_="x")),
        npz_extra_array=_tamper_npz(h / "lsh.npz", h / "array.npz", extra_array=True),
        npz_bad_param=_tamper_npz(h / "lsh.npz", h / "param.npz", lambda hd: hd["params"].update(k=0)),
        npz_bad_shape=_tamper_npz(h / "lsh.npz", h / "shape.npz", lambda hd: hd["attrs"].update(input_shape_=[8, 9])),
    )
    return w


def _strip_digest(model) -> None:
    keep = [p for p in model.metadata_props if p.key != "hashplug.digest"]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)


def _nh_with(w, name, idx, value):
    out = {k: np.array(v, copy=True) for k, v in w.extra["S"].items()}
    out[name][idx] = value
    return out


def _nan_row(w):
    X = np.array(w.X[:5], copy=True)
    X[2, 3] = np.nan
    return X


E = lambda w, key: w.extra[key]  # noqa: E731
Q = lambda w: json.dumps([float(v) for v in w.X[0]])  # noqa: E731

CASES = [
    # ------------------------------------------------------------------ OnnxEncoder: paths and files
    Case("model-onnx-path-none", "hashplug.OnnxEncoder", "path=None", HashplugTypeError, r"path must be a file path",
         lambda w: OnnxEncoder(None)),
    Case("model-onnx-path-int", "hashplug.OnnxEncoder", "path=3", HashplugTypeError, r"got int 3",
         lambda w: OnnxEncoder(3)),
    Case("model-onnx-missing", "hashplug.OnnxEncoder", "a path that does not exist", ModelNotFoundError,
         r"No ONNX model file", lambda w: OnnxEncoder(w.root / "models" / "nope.onnx")),
    Case("model-onnx-folder", "hashplug.OnnxEncoder", "a folder", ModelFileError, r"is not a file",
         lambda w: OnnxEncoder(w.root / "models")),
    Case("model-onnx-empty-file", "hashplug.OnnxEncoder", "an empty file", ModelFileError, r"not a well-formed ONNX",
         lambda w: OnnxEncoder(E(w, "h") / "empty.onnx")),
    Case("model-onnx-truncated", "hashplug.OnnxEncoder", "an .onnx cut short by 300 bytes", ModelFileError,
         r"not a well-formed ONNX", lambda w: OnnxEncoder(E(w, "h") / "trunc.onnx")),
    Case("model-onnx-npz", "hashplug.OnnxEncoder", "a .npz model passed as ONNX", ModelFileError,
         r"not a well-formed ONNX|not a hashplug ONNX", lambda w: OnnxEncoder(E(w, "h") / "lsh.npz")),
    Case("model-onnx-no-card", "hashplug.OnnxEncoder", "an ONNX graph without hashplug metadata", ModelFileError,
         r"not a hashplug ONNX file", lambda w: OnnxEncoder(E(w, "h") / "plain.onnx")),
    Case("model-onnx-max-bytes", "hashplug.OnnxEncoder", "max_bytes=1000 for a larger file", ModelFileError,
         r"over the limit of 1,000 \(max_bytes\)", lambda w: OnnxEncoder(w.lsh_path, max_bytes=1000)),
    Case("model-onnx-max-bytes-0", "hashplug.OnnxEncoder", "max_bytes=0", HashplugError, r"'max_bytes' parameter",
         lambda w: OnnxEncoder(w.lsh_path, max_bytes=0)),
    Case("model-onnx-batch-size-0", "hashplug.OnnxEncoder", "batch_size=0", HashplugError, r"'batch_size' parameter",
         lambda w: OnnxEncoder(w.lsh_path, batch_size=0)),
    # ------------------------------------------------------------------ OnnxEncoder: tampered or hostile files
    Case("model-onnx-negated-weights", "hashplug.OnnxEncoder", "weights negated, card untouched", ModelFileError,
         r"digest mismatch", lambda w: OnnxEncoder(E(w, "negated"))),
    Case("model-onnx-zeroed-sha", "hashplug.OnnxEncoder", "weights_sha256 zeroed", ModelFileError, r"digest mismatch",
         lambda w: OnnxEncoder(E(w, "zero_sha"))),
    Case("model-onnx-relabelled", "hashplug.OnnxEncoder", "method relabelled lsh -> biohash", ModelFileError,
         r"digest mismatch", lambda w: OnnxEncoder(E(w, "relabel"))),
    Case("model-onnx-m-changed", "hashplug.OnnxEncoder", "m=k=31 in the card, graph of 32", ModelFileError,
         r"digest mismatch", lambda w: OnnxEncoder(E(w, "m_changed"))),
    Case("model-onnx-bad-digest", "hashplug.OnnxEncoder", "hashplug.digest='zz'", ModelFileError, r"digest mismatch",
         lambda w: OnnxEncoder(E(w, "bad_digest"))),
    Case("model-onnx-m-legacy", "hashplug.OnnxEncoder", "no digest, m=40 / n_bytes=5 against a 4-byte output",
         ModelFileError, r"card says uint8 \(N, 5\)", lambda w: OnnxEncoder(E(w, "m_legacy"))),
    Case("model-onnx-loop", "hashplug.OnnxEncoder", "a 10**15-iteration Loop, valid digest", ModelFileError,
         r"control-flow op\(s\) \['Loop'\]", lambda w: OnnxEncoder(E(w, "loop"))),
    Case("model-onnx-if", "hashplug.OnnxEncoder", "an If node, valid digest", ModelFileError,
         r"control-flow op\(s\) \['If'\]", lambda w: OnnxEncoder(E(w, "if_op"))),
    Case("model-onnx-scan-legacy", "hashplug.OnnxEncoder", "a Scan node, no digest", ModelFileError,
         r"control-flow op\(s\) \['Scan'\]", lambda w: OnnxEncoder(E(w, "scan"))),
    Case("model-onnx-domain", "hashplug.OnnxEncoder", "a node in domain com.evil", ModelFileError,
         r"domain\(s\) \['com.evil'\]", lambda w: OnnxEncoder(E(w, "domain"))),
    Case("model-onnx-foreign-op", "hashplug.OnnxEncoder", "a RandomUniformLike node (random codes: never accepted)",
         ModelFileError, r"op\(s\) \['RandomUniformLike'\]", lambda w: OnnxEncoder(E(w, "random"))),
    Case("model-onnx-external-data", "hashplug.OnnxEncoder", "an initializer stored in /etc/passwd", ModelFileError,
         r"external file", lambda w: OnnxEncoder(E(w, "external"))),
    Case("model-onnx-functions", "hashplug.OnnxEncoder", "a local function in the model", ModelFileError,
         r"local functions", lambda w: OnnxEncoder(E(w, "function"))),
    Case("model-onnx-subgraph", "hashplug.OnnxEncoder", "a graph attribute on an allowed node", ModelFileError,
         r"subgraph attribute", lambda w: OnnxEncoder(E(w, "subgraph"))),
    Case("model-read-metadata-loop", "hashplug.export.read_metadata", "the Loop file", ModelFileError,
         r"control-flow", lambda w: hashplug.export.read_metadata(E(w, "loop"))),
    # ------------------------------------------------------------------ encode paths
    Case("model-encode-nan", "OnnxEncoder.encode", "a NaN in row 2", HashplugError, r"NaN or infinity",
         lambda w: E(w, "lsh_onx").encode(_nan_row(w))),
    Case("model-encode-width", "OnnxEncoder.encode", "10 features for a 64-feature model", HashplugError,
         r"per-sample shape \(10,\)", lambda w: E(w, "lsh_onx").encode(w.X[:3, :10])),
    Case("model-encode-format", "OnnxEncoder.encode", "format='bits'", HashplugError, r"Unknown code format",
         lambda w: E(w, "lsh_onx").encode(w.X[:3], format="bits")),
    Case("model-encode-indices-dense", "OnnxEncoder.encode", "format='indices' on dense codes", HashplugError,
         r"only for k-hot", lambda w: E(w, "lsh_onx").encode(w.X[:3], format="indices")),
    Case("model-encode-strings", "OnnxEncoder.encode", "a list of strings", HashplugError, r"must be numeric",
         lambda w: E(w, "fly_onx").encode([["a"] * 64])),
    Case("model-encode-empty", "OnnxEncoder.encode", "0 rows", HashplugError, r"empty batch",
         lambda w: E(w, "lsh_onx").encode(np.zeros((0, 64), np.float32))),
    Case("model-encode-batch-size", "OnnxEncoder.encode", "batch_size=-1", HashplugError, r"'batch_size' parameter",
         lambda w: E(w, "lsh_onx").encode(w.X[:3], batch_size=-1)),
    Case("model-numpy-encode-nan", "encoder.encode", "a NaN in row 2", HashplugError, r"NaN or infinity",
         lambda w: E(w, "lsh").encode(_nan_row(w))),
    Case("model-nh-numpy-mask-half", "NeuroHash.encode", "object_mask 0.5", HashplugError,
         r"object_mask must hold only the values \[0, 1\]",
         lambda w: E(w, "nh").encode(_nh_with(w, "object_mask", (0, 0), 0.5))),
    Case("model-nh-onnx-mask-half", "OnnxEncoder.encode (NeuroHash)", "object_mask 0.5", HashplugError,
         r"object_mask must hold only the values \[0, 1\]",
         lambda w: E(w, "nh_onnx").encode(_nh_with(w, "object_mask", (0, 0), 0.5))),
    Case("model-nh-numpy-nan-valid", "NeuroHash.encode", "NaN position of a valid object", HashplugError,
         r"NaN or infinity at index \(0, 0, 0\)",
         lambda w: E(w, "nh").encode(_nh_with(w, "object_positions", (0, 0, 0), np.nan))),
    Case("model-nh-onnx-position-100", "OnnxEncoder.encode (NeuroHash)", "object position 100", HashplugError,
         r"object_positions must lie in \[-0.5, 1.5\]",
         lambda w: E(w, "nh_onnx").encode(_nh_with(w, "object_positions", (0, 0, 1), 100.0))),
    # ------------------------------------------------------------------ to_onnx / export_module
    Case("model-to-onnx-none", "hashplug.export.to_onnx", "encoder=None", HashplugTypeError,
         r"fitted hashplug encoder", lambda w: to_onnx(None, w.root / "models" / "n.onnx")),
    Case("model-to-onnx-unfitted", "hashplug.export.to_onnx", "an unfitted LSH", NotFittedError, r"not fitted",
         lambda w: to_onnx(hashplug.get_encoder("lsh", k=8), w.root / "models" / "u.onnx")),
    Case("model-to-onnx-path-none", "hashplug.export.to_onnx", "path=None", HashplugTypeError,
         r"path must be a file path", lambda w: to_onnx(E(w, "lsh"), None)),
    Case("model-to-onnx-opset", "hashplug.export.to_onnx", "opset=99", HashplugError, r"opset must be in \[13, 22\]",
         lambda w: to_onnx(E(w, "lsh"), w.root / "models" / "o.onnx", opset=99)),
    Case("model-to-onnx-opset-str", "hashplug.export.to_onnx", "opset='17'", HashplugError, r"opset must be in",
         lambda w: to_onnx(E(w, "lsh"), w.root / "models" / "o.onnx", opset="17")),
    Case("model-to-onnx-folder", "hashplug.export.to_onnx", "a folder named dir.onnx", ModelFileError, r"is a folder",
         lambda w: to_onnx(E(w, "lsh"), E(w, "h") / "dir.onnx")),
    Case("model-to-onnx-into-folder", "hashplug.export.to_onnx", "an existing folder (no suffix)", ModelFileError,
         r"is a folder", lambda w: to_onnx(E(w, "lsh"), w.root / "models")),
    Case("model-save-into-folder", "encoder.save", "an existing folder (no suffix)", ModelFileError,
         r"is a folder", lambda w: E(w, "lsh").save(w.root / "models")),
    Case("model-to-onnx-parent-file", "hashplug.export.to_onnx", "a path under a file", ModelFileError,
         r"cannot write the ONNX file", lambda w: to_onnx(E(w, "lsh"), Path(w.lsh_path) / "x.onnx")),
    Case("model-export-module-none", "hashplug.export.export_module", "module=None", HashplugTypeError,
         r"torch.nn.Module", lambda w: export_module(None, w.root / "models" / "m.onnx", (64,))),
    # ------------------------------------------------------------------ load_encoder / save
    Case("model-load-none", "hashplug.load_encoder", "path=None", HashplugTypeError, r"path must be a file path",
         lambda w: load_encoder(None)),
    Case("model-load-missing", "hashplug.load_encoder", "a missing file", ModelNotFoundError, r"No model file",
         lambda w: load_encoder(w.root / "nope.npz")),
    Case("model-load-onnx", "hashplug.load_encoder", "an .onnx file", ModelFileError, r"it is an ONNX file",
         lambda w: load_encoder(w.lsh_path)),
    Case("model-load-truncated", "hashplug.load_encoder", "an .npz cut short", ModelFileError, r"corrupt",
         lambda w: load_encoder(E(w, "h") / "trunc.npz")),
    Case("model-load-extra-attr", "hashplug.load_encoder", "header attrs += {'encode_': 'x'}", ModelFileError,
         r"does not save", lambda w: load_encoder(E(w, "npz_extra_attr"))),
    Case("model-load-extra-array", "hashplug.load_encoder", "an extra array evil_ (sha256 recomputed)",
         ModelFileError, r"does not save", lambda w: load_encoder(E(w, "npz_extra_array"))),
    Case("model-load-bad-param", "hashplug.load_encoder", "header params k=0", ModelFileError, r"invalid parameters",
         lambda w: load_encoder(E(w, "npz_bad_param"))),
    Case("model-load-bad-shape", "hashplug.load_encoder", "input_shape_ [8, 9] for 64 features", ModelFileError,
         r"does not flatten to 64", lambda w: load_encoder(E(w, "npz_bad_shape"))),
    Case("model-save-unfitted", "encoder.save", "an unfitted LSH", NotFittedError, r"not fitted",
         lambda w: hashplug.get_encoder("lsh", k=8).save(w.root / "models" / "u.npz")),
    Case("model-save-path-none", "encoder.save", "path=None", HashplugTypeError, r"path must be a file path",
         lambda w: E(w, "lsh").save(None)),
    Case("model-save-parent-file", "encoder.save", "a path under a file", ModelFileError,
         r"cannot write the model file", lambda w: E(w, "lsh").save(Path(w.lsh_path) / "m.npz")),
    Case("model-set-divisor-0", "encoder.set_input_divisor", "divisor=0", HashplugError,
         r"finite number > 0", lambda w: hashplug.get_encoder("lsh", k=8).fit(w.X).set_input_divisor(0)),
    # ------------------------------------------------------------------ CLI
    Case("model-cli-train-scale-0", "hashplug train (CLI)", "--scale 0", "exit 2", r"--scale must be a finite number > 0",
         lambda w: ["train", "lsh", "--data", E(w, "h") / "x.npy", "--k", "8", "--scale", "0",
                    "--out", w.root / "models" / "s.npz"]),
    Case("model-cli-train-scale-nan", "hashplug train (CLI)", "--scale nan", "exit 2", r"--scale must be a finite",
         lambda w: ["train", "lsh", "--data", E(w, "h") / "x.npy", "--k", "8", "--scale", "nan",
                    "--out", w.root / "models" / "s.npz"]),
    Case("model-cli-train-scale-neg", "hashplug train (CLI)", "--scale -255", "exit 2", r"--scale must be a finite",
         lambda w: ["train", "lsh", "--data", E(w, "h") / "x.npy", "--k", "8", "--scale", "-255",
                    "--out", w.root / "models" / "s.npz"]),
    Case("model-cli-train-out-under-file", "hashplug train (CLI)", "--out under a file", "exit 2",
         r"is under .*which is a file",
         lambda w: ["train", "lsh", "--data", E(w, "h") / "x.npy", "--k", "8", "--out", Path(w.lsh_path) / "m.npz"]),
    Case("model-cli-train-out-folder", "hashplug train (CLI)", "--out an existing folder", "exit 2",
         r"--out .* is a folder",
         lambda w: ["train", "lsh", "--data", E(w, "h") / "x.npy", "--k", "8", "--out", w.root / "models"]),
    Case("model-cli-train-onnx-under-file", "hashplug train (CLI)", "--onnx under a file (the .npz would be written "
         "first)", "exit 2", r"--onnx .* is under",
         lambda w: ["train", "lsh", "--data", E(w, "h") / "x.npy", "--k", "8", "--out", w.root / "models" / "t.npz",
                    "--onnx", Path(w.lsh_path) / "t.onnx"]),
    Case("model-cli-eval-scale-0", "hashplug eval (CLI)", "--scale 0", "exit 2", r"--scale must be a finite",
         lambda w: ["eval", E(w, "h") / "lsh.npz", "--data", E(w, "h") / "xy.npz", "--scale", "0"]),
    Case("model-cli-eval-double-scale", "hashplug eval (CLI)", "--scale 255 on a model trained with --scale",
         "exit 2", r"scale the input twice",
         lambda w: ["eval", E(w, "scaled_npz"), "--data", E(w, "h") / "xy.npz", "--scale", "255"]),
    Case("model-cli-eval-onnx", "hashplug eval (CLI)", "an .onnx model", "exit 2", r"it is an ONNX file",
         lambda w: ["eval", w.lsh_path, "--data", E(w, "h") / "xy.npz"]),
    Case("model-cli-export-onnx-as-model", "hashplug export (CLI)", "an .onnx as the model", "exit 2",
         r"it is an ONNX file", lambda w: ["export", w.lsh_path, "--out", w.root / "models" / "e.onnx"]),
    Case("model-cli-export-scale-no-check", "hashplug export (CLI)", "--scale without --check", "exit 2",
         r"--scale applies to the --check data only",
         lambda w: ["export", E(w, "h") / "lsh.npz", "--out", w.root / "models" / "e.onnx", "--scale", "255"]),
    Case("model-cli-export-double-scale", "hashplug export (CLI)", "--check with --scale on a scaled model",
         "exit 2", r"scale the input twice",
         lambda w: ["export", E(w, "scaled_npz"), "--out", w.root / "models" / "e.onnx", "--check",
                    E(w, "h") / "x.npy", "--scale", "16"]),
    Case("model-cli-export-check-missing", "hashplug export (CLI)", "--check a missing file (the .onnx would be "
         "written first)", "exit 2", r"neither a known dataset",
         lambda w: ["export", E(w, "h") / "lsh.npz", "--out", w.root / "models" / "e.onnx", "--check",
                    E(w, "h") / "nope.npy"]),
    Case("model-cli-export-out-folder", "hashplug export (CLI)", "--out an existing folder", "exit 2",
         r"--out .* is a folder", lambda w: ["export", E(w, "h") / "lsh.npz", "--out", w.root / "models"]),
    Case("model-cli-export-opset", "hashplug export (CLI)", "--opset 99", "exit 2", r"opset must be in",
         lambda w: ["export", E(w, "h") / "lsh.npz", "--out", w.root / "models" / "e.onnx", "--opset", "99"]),
    Case("model-cli-ingest-scale-0", "hashplug ingest (CLI)", "--scale 0", "exit 2", r"--scale must be a finite",
         lambda w: ["ingest", E(w, "h") / "x.npy", "--db", w.db_path, "--table", "t", "--scale", "0"]),
    Case("model-cli-ingest-double-scale", "hashplug ingest (CLI)", "--scale 16 with a model trained with --scale",
         "exit 2", r"scale the input twice",
         lambda w: ["ingest", E(w, "h") / "x.npy", "--db", w.db_path, "--table", "new", "--model", E(w, "scaled_onnx"),
                    "--scale", "16"]),
    Case("model-cli-ingest-scale-parquet", "hashplug ingest (CLI)", "--scale 16 with a parquet source (was ignored)",
         "exit 2", r"--scale applies to .npy/.npz sources only",
         lambda w: ["ingest", E(w, "h") / "x.parquet", "--db", w.db_path, "--table", "t", "--scale", "16"]),
    Case("model-cli-search-scale-inf", "hashplug search (CLI)", "--scale inf", "exit 2", r"--scale must be a finite",
         lambda w: ["search", "--db", w.db_path, "--table", "t", "--query", Q(w), "--scale", "inf"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, world, capsys):
    check_case(case, world, capsys)
