"""BioConvHash codes of the frozen install (ONNX via onnxruntime) vs the codes saved before the encode work (1825273)."""
import hashlib, json, tempfile, time
from pathlib import Path
import numpy as np
from hashplug.encoders.persistence import load_encoder
from hashplug.export import to_onnx
from hashplug.runtime import OnnxEncoder
B = Path("/tmp/enc31_base")
out = {}
for ds in ("mnist", "cifar10"):
    enc = load_encoder(B / f"{ds}.npz")
    X = np.load(B / f"{ds}_test.npy")
    ref = np.load(B / f"{ds}_codes.npy")
    with tempfile.TemporaryDirectory() as t:
        onx = OnnxEncoder(to_onnx(enc, Path(t) / "m.onnx"))
        t0 = time.perf_counter(); c = onx.encode(X.reshape(len(X), *enc.input_shape_)); dt = time.perf_counter() - t0
    d = json.loads((B / f"digests_{ds}.json").read_text())[ds]
    out[ds] = {"images": int(len(X)), "shape": list(c.shape), "identical_to_saved_codes": bool(np.array_equal(c, ref)),
               "sha256": hashlib.sha256(c.tobytes()).hexdigest(), "saved_sha256": d["codes_sha256"],
               "rows_differing": int(np.sum(np.any(c != ref, axis=1))) if c.shape == ref.shape else None, "encode_s": round(dt, 2)}
    print(ds, out[ds], flush=True)
Path("digests.json").write_text(json.dumps(out, indent=1))
