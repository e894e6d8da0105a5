"""BioConvHash: a hand-checked forward pass, invariances, quality on digits, parameters and errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from hashplug.data import per_class_split
from hashplug.encoders import BioConvHash, BioHash, get_preset
from hashplug.encoders.bioconvhash import pool_padding, sample_patches
from hashplug.metrics import map_from_codes
from hashplug.validation import HashplugError

pytest.importorskip("torch")

SMALL = {"k": 4, "m": 40, "n_filters": 8, "kernel_sizes": (3,), "kci": 2, "pool_size": 3, "filter_epochs": 2,
         "n_patches": 2000, "epochs": 5, "lr": 0.2, "init": "data", "device": "cpu"}


@pytest.fixture(scope="module")
def images(digits):
    X, y = digits
    return X.reshape(-1, 8, 8), y


@pytest.fixture(scope="module")
def small(images):
    return BioConvHash(random_state=0, **SMALL).fit(images[0])


def _set_weights(enc: BioConvHash, banks: list[np.ndarray], W: np.ndarray) -> BioConvHash:
    enc.filters_ = np.concatenate([b.reshape(-1) for b in banks]).astype(np.float32)
    enc.W_ = np.asarray(W, dtype=np.float32)
    return enc


def test_forward_pass_worked_by_hand():
    """A 1 x 3 x 3 image, two 2 x 2 filters, k_CI = 1, pool 2 (whole map), one BioHash unit per feature."""
    x = np.array([[[1, 0, 0], [0, 0, 0], [0, 0, 2]]], np.float32)  # (1, 3, 3)
    f_a = np.array([[[1, 0], [0, 0]]], np.float32)  # picks the top-left pixel of a patch
    f_b = np.array([[[0, 0], [0, 1]]], np.float32)  # the bottom-right pixel
    enc = BioConvHash(k=1, m=2, n_filters=2, kernel_sizes=(2,), kci=1, pool_size=2, p=2.0, filter_p=2.0)
    enc.input_shape_, enc.n_features_in_, enc.m_, enc.k_ = (1, 3, 3), 9, 2, 1
    enc.input_scale_, enc.mean_ = 2.0, np.zeros(1, np.float32)
    _set_weights(enc, [np.stack([f_a, f_b])], np.eye(2))
    # scaled image /2: [[.5,0,0],[0,0,0],[0,0,1]]; the four 2x2 patches (row-major locations):
    #   (0,0): [.5,0;0,0] norm .5 -> cos a = 1, b = 0      (1,1): [0,0;0,1] norm 1 -> a = 0, b = 1
    #   (0,1), (1,0): blank -> 0 / eps = 0 for both
    # k_CI = 1 keeps the larger per location (ties -> filter a); ReLU; pool 2x2 with stride 2 over the 2x2
    # map (padding 0) -> one value per filter: a = 1, b = 1; unit-normalised -> [1, 1] / sqrt(2)
    feats = enc.feature_graph().numpy(x=x[None])
    np.testing.assert_allclose(feats, [[2**-0.5, 2**-0.5]], rtol=1e-6)
    np.testing.assert_allclose(enc.scores(x[None]), [[2**-0.5, 2**-0.5]], rtol=1e-6)
    # the two units tie: the lower index wins (unit 0)
    np.testing.assert_array_equal(enc.encode(x[None], layout="indices"), [[0]])
    # k_CI = 2 at location (0,0) also keeps b's 0; nothing changes. Darken the top-left pixel to a tiny
    # value: patch normalisation keeps its cosine at 1, so the features do not move.
    x2 = x.copy()
    x2[0, 0, 0] = 0.01
    np.testing.assert_allclose(enc.feature_graph().numpy(x=x2[None]), feats, rtol=1e-5)


def test_pool_padding_covers_every_row():
    assert pool_padding(26, 7, 7) == 1  # 26 + 2 = 28 = 4 windows of 7
    assert pool_padding(25, 7, 7) == 2  # 25 + 4 = 29 -> 4 windows cover 28 - 2 = 26 >= 25
    assert pool_padding(8, 2, 2) == 0
    for size in range(3, 40):
        for kernel in range(1, min(size, 9) + 1):
            for stride in range(1, kernel + 1):
                pad = pool_padding(size, kernel, stride)
                out = (size + 2 * pad - kernel) // stride + 1
                assert 0 <= pad <= kernel // 2
                if (out - 1) * stride + kernel - pad < size:  # not covered: only when no padding could
                    assert all(
                        ((size + 2 * q - kernel) // stride) * stride + kernel - q < size for q in range(kernel // 2 + 1)
                    )


def test_sample_patches_are_unit_and_not_blank():
    rng = np.random.default_rng(0)
    X = np.zeros((20, 1, 6, 6), np.float32)
    X[:, :, 2:4, 2:4] = rng.random((20, 1, 2, 2)) + 0.1
    P = sample_patches(X, 3, 500, rng, 1e-3)
    assert P.shape == (500, 9)
    np.testing.assert_allclose(np.linalg.norm(P, axis=1), 1.0, rtol=1e-5)
    raw = sample_patches(X, 3, 200, rng, 1e-3, normalize=False)
    assert raw.shape == (200, 9) and (np.linalg.norm(raw, axis=1) > 1e-3).all()
    assert sample_patches(np.zeros((3, 1, 5, 5), np.float32), 3, 10, rng, 1e-3).shape == (0, 9)


def test_scaling_the_images_by_powers_of_two_changes_nothing(small, images):
    """Patch normalisation and the final L2 normalisation make the codes invariant to the input's scale
    (powers of two scale floats exactly, so the codes are bit-identical)."""
    X = images[0][:300]
    ref = small.encode(X)
    for c in (0.5, 2.0, 4.0):
        np.testing.assert_array_equal(small.encode(X * np.float32(c)), ref)


def test_kci_equal_to_the_filters_keeps_every_positive_cosine(small, images):
    X = images[0][:50]
    full = BioConvHash(**{**small.get_params(), "kci": SMALL["n_filters"]})
    for a in ("filters_", "W_", "mean_", "input_scale_", "input_shape_", "n_features_in_", "m_", "k_",
              "n_features_pooled_"):
        setattr(full, a, getattr(small, a))
    g = full.feature_graph()
    assert [n.op.name for n in g.nodes if n.op.name == "topk_per_location"] == ["topk_per_location"]
    # no inhibition: every feature-map value is the ReLU of the cosine; with k_CI = 2 of 8 most are zeroed
    dense = full.pooled_features(X)
    sparse = small.pooled_features(X)
    assert (dense > 0).sum() > (sparse > 0).sum()


def test_codes_from_features_match_encode(small, images):
    X = images[0]
    same = np.all(small.codes_from_features(small.pooled_features(X)) == small.encode(X), axis=1)
    assert same.mean() >= 0.99
    np.testing.assert_array_equal(
        small.codes_from_features(small.pooled_features(X[:20]), layout="indices"), small.encode(X[:20], "indices")
    )


def test_flat_rows_with_image_shape_give_the_same_model(images):
    X = images[0]
    a = BioConvHash(random_state=1, **SMALL).fit(X)
    b = BioConvHash(random_state=1, image_shape=(8, 8), **SMALL).fit(X.reshape(len(X), 64))
    np.testing.assert_array_equal(a.filters_, b.filters_)
    np.testing.assert_array_equal(a.encode(X[:100]), b.encode(X[:100].reshape(100, 64)))
    assert b.graph.inputs == {"x": (64,)} and a.graph.inputs == {"x": (8, 8)}


def test_fit_filters_then_fit_layer_equals_fit(images):
    X = images[0]
    ref = BioConvHash(random_state=2, **SMALL).fit(X)
    enc = BioConvHash(random_state=2, **{**SMALL, "k": 2})
    feats = enc.fit_filters(X)
    assert feats.shape == (len(X), enc.n_features_pooled_)
    enc.fit_layer(feats, k=SMALL["k"])
    np.testing.assert_array_equal(enc.W_, ref.W_)
    np.testing.assert_array_equal(enc.encode(X[:200]), ref.encode(X[:200]))
    with pytest.raises(HashplugError, match=re.escape("fit_layer changes the BioHash layer only; ['n_filters']")):
        enc.fit_layer(feats, n_filters=3)
    with pytest.raises(HashplugError, match=re.escape(f"expected (n, {enc.n_features_pooled_})")):
        enc.fit_layer(feats[:, :5])
    # a forward parameter may change with features computed for it: pool 2 -> a 3 x 3 grid of 8 filters
    enc.set_params(pool_size=2)
    feats2 = enc.pooled_features(X)
    assert feats2.shape == (len(X), 8 * 3 * 3)
    with pytest.raises(HashplugError, match=re.escape("expected (n, 72)")):
        enc.fit_layer(feats, pool_size=2)
    enc.fit_layer(feats2, pool_size=2)
    assert enc.n_features_pooled_ == 72 and enc.graph.m == enc.m_


def test_bioconvhash_beats_biohash_on_digits_at_k_8_and_16(digits):
    """Digits as 8 x 8 images, each method with its digits preset, seed 0: 20 queries per class."""
    X, y = digits
    q, db = per_class_split(y, 20, 0)
    images = X.reshape(-1, 8, 8)
    for k in (8, 16):
        conv = BioConvHash(k=k, random_state=0, device="cpu", **get_preset(BioConvHash, "digits").for_k(k))
        conv.fit(images[db])
        bio = BioHash(k=k, random_state=0, device="cpu", **get_preset(BioHash, "digits").for_k(k)).fit(X[db])
        m_conv = map_from_codes(conv.encode(images[q]), conv.encode(images[db]), y[q], y[db], tie_aware=True)
        m_bio = map_from_codes(bio.encode(X[q]), bio.encode(X[db]), y[q], y[db], tie_aware=True)
        assert m_conv > m_bio + 0.01, (k, m_conv, m_bio)
        assert m_conv > 0.7, (k, m_conv)
        conv_facts = conv.convergence_
        assert conv_facts["row_norm_dev_max"] < 0.05 and conv_facts["units_ever_won"] == 1.0, conv_facts


def test_parameter_errors_name_the_value_and_the_range(images):
    X = images[0][:200]
    cases = [
        ({"kci": 9}, "The 'kci' parameter of BioConvHash must be an int in [1, n_filters=8]. Got 9 instead."),
        ({"kernel_sizes": (3, 9)}, "The 'kernel_sizes' parameter of BioConvHash must be an int in [1, min(H, W)=8]. Got 9"),
        ({"kernel_sizes": ()}, "The 'kernel_sizes' parameter of BioConvHash must be a non-empty list"),
        ({"pool_size": 7}, "The 'pool_size' parameter of BioConvHash must be an int in [1, 6]"),
        ({"k": 41}, "The 'k' parameter of BioConvHash must be an int in [1, m=40]. Got 41 instead."),
        ({"filter_init": "zeros"}, "The 'filter_init' parameter of BioConvHash must be one of ['normal', 'data']"),
        ({"patch_eps": 0.0}, "The 'patch_eps' parameter of BioConvHash"),
        ({"image_shape": (8,)}, "The 'image_shape' parameter of BioConvHash must be (H, W) or (C, H, W)"),
    ]
    for change, msg in cases:
        with pytest.raises(HashplugError, match=re.escape(msg)):
            BioConvHash(**{**SMALL, **change}).fit(X)


def test_input_errors_say_how_to_fix_them(images, small):
    X = images[0][:50]
    with pytest.raises(HashplugError, match=re.escape("got flat rows of shape (50, 64). Reshape them")):
        BioConvHash(**SMALL).fit(X.reshape(50, 64))
    with pytest.raises(HashplugError, match=re.escape("looks channels-last (n, H, W, C). Pass X.transpose(0, 3, 1, 2)")):
        BioConvHash(**SMALL).fit(np.zeros((5, 8, 8, 3), np.float32) + 1)
    with pytest.raises(HashplugError, match=re.escape("does not hold images of image_shape=(7, 7)")):
        BioConvHash(**{**SMALL, "image_shape": (7, 7)}).fit(X)
    with pytest.raises(HashplugError, match="non-blank 3x3 patches"):
        BioConvHash(**SMALL).fit(np.zeros((10, 8, 8), np.float32))
    with pytest.raises(HashplugError, match=re.escape("per-sample shape (4, 16), but the model expects (8, 8)")):
        small.encode(X.reshape(-1, 4, 16))


def test_failed_fit_keeps_the_fitted_model(small, images):
    before = small.encode(images[0][:30])
    with pytest.raises(HashplugError):
        small.fit(images[0][:0])
    np.testing.assert_array_equal(small.encode(images[0][:30]), before)


def test_convergence_and_timings_are_recorded_and_saved(small, tmp_path):
    facts = small.convergence_
    assert set(facts) == {"row_norm_dev_max", "row_norm_dev_median", "units_ever_won", "filter_row_norm_dev_max",
                          "filter_units_ever_won"}
    assert 0 < facts["filter_units_ever_won"] <= 1
    assert set(small.fit_seconds_) == {"filters", "features", "layer"}
    loaded = BioConvHash.load(small.save(tmp_path / "conv.npz"))
    assert loaded.convergence_ == pytest.approx(facts) and loaded.fit_seconds_ == pytest.approx(small.fit_seconds_)
    assert [b.shape for b in loaded.filter_banks_] == [(8, 1, 3, 3)]


def test_corrupt_filter_array_is_a_model_file_error(small, tmp_path):
    from hashplug.encoders.base import FILE_FORMAT, sha256_arrays  # noqa: F401
    from hashplug.validation import ModelFileError

    bad = BioConvHash(**small.get_params())
    bad.__dict__.update({k: v for k, v in small.__dict__.items() if k.endswith("_")})
    bad.filters_ = small.filters_[:-3]
    with pytest.raises(ModelFileError, match="do not fit its header"):
        BioConvHash.load(bad.save(tmp_path / "bad.npz"))


def test_lancedb_table_of_images_written_by_the_exported_model(small, images, tmp_path):
    """Export, then the serving side only: an image column (fixed-size arrays) encoded by the ONNX model."""
    pytest.importorskip("onnx")
    lancedb = pytest.importorskip("lancedb")
    import pyarrow as pa
    from lancedb.embeddings import get_registry

    import hashplug
    import hashplug.integrations.lancedb as hl
    from hashplug.export import to_onnx

    path = to_onnx(small, tmp_path / "conv.onnx")
    func = get_registry().get("hashplug").create(model=str(path))
    sch = hl.schema(func, source="image", source_type="fixed", extra={"id": pa.int64()})
    assert sch.field("image").type == pa.list_(pa.list_(pa.float32(), 8), 8)
    X = images[0][:200]
    tbl = lancedb.connect(tmp_path / "db").create_table("digits", schema=sch)
    hashplug.ingest(tbl, X, source_column="image", columns={"id": np.arange(len(X))}, progress=False)
    got = tbl.to_arrow().sort_by("id")
    codes = np.stack([np.asarray(c, dtype=np.uint8) for c in got["code"].to_pylist()])
    np.testing.assert_array_equal(codes, small.encode(X))
    res = hashplug.search(tbl, X[7], limit=3, columns=["id"])
    assert res["_distance"][0].as_py() == 0.0 and 7 in res["id"].to_pylist()


def test_pooled_features_check_their_input(small, images):
    X = images[0][:10].copy()
    assert small.pooled_features(X[:0]).shape == (0, small.n_features_pooled_)
    X[3, 2, 2] = np.nan
    with pytest.raises(HashplugError, match="NaN or infinity"):
        small.pooled_features(X)
    with pytest.raises(HashplugError, match=re.escape("features have shape (2, 3)")):
        small.codes_from_features(np.zeros((2, 3), np.float32))


def test_layer_center_trains_on_centred_features_and_round_trips(images, tmp_path):
    """layer_center: the layer is BioHash on (features - training mean); save/load, ONNX and fit_layer agree."""
    from hashplug.encoders import BioHash
    from hashplug.export import to_onnx
    from hashplug.runtime import OnnxEncoder

    X = images[0]
    enc = BioConvHash(random_state=3, layer_center=True, **SMALL).fit(X)
    feats = enc.pooled_features(X)
    np.testing.assert_allclose(enc.layer_mean_, feats.mean(axis=0), rtol=1e-5, atol=1e-6)
    # worked by hand: the scores are W_p (f - mean), so the top-k of those is the code
    scores = (feats[:50] - enc.layer_mean_) @ enc.W_.T  # p = 2: W_p = W (|W|^(p-2) = 1)
    top = np.argsort(-scores, axis=1, kind="stable")[:, : enc.k_]
    np.testing.assert_array_equal(np.sort(top, axis=1), enc.codes_from_features(feats[:50], layout="indices"))
    # the layer itself is step 1's BioHash on the centred features (same seed, same rule)
    bh = BioHash(k=enc.k_, m=enc.m_, p=enc.p, delta=enc.delta, epochs=enc.epochs, lr=enc.lr, init="data",
                 batch_size=enc.batch_size, random_state=3, device="cpu").fit(feats - enc.layer_mean_)
    np.testing.assert_allclose(bh.W_, enc.W_, rtol=1e-5, atol=1e-6)
    # save / load and ONNX export keep the centring
    loaded = BioConvHash.load(enc.save(tmp_path / "centred.npz"))
    np.testing.assert_array_equal(loaded.layer_mean_, enc.layer_mean_)
    np.testing.assert_array_equal(loaded.encode(X[:100]), enc.encode(X[:100]))
    ort = OnnxEncoder(to_onnx(enc, tmp_path / "centred.onnx"))
    np.testing.assert_array_equal(ort.encode(X[:100]), enc.encode(X[:100]))
    # retraining without centring drops the mean; the codes change
    enc.fit_layer(feats, layer_center=False)
    assert not hasattr(enc, "layer_mean_") and "centred" not in [n.output for n in enc.graph.nodes]


def test_filter_stage_is_bit_identical_on_numpy_torch_and_onnxruntime(images):
    """accumulate="float64": the pooled features (before and after the final normalisation) agree to the last
    bit on the three backends, also where filters tie exactly (a duplicate filter in another SIMD block never
    wins)."""
    import onnxruntime as ort
    import torch

    from hashplug.export.onnx_export import graph_model
    from hashplug.graph import Graph

    X = images[0]
    enc = BioConvHash(random_state=0, **{**SMALL, "n_filters": 13, "kci": 1}).fit(X)
    bank = enc.filter_banks_[0].copy()
    bank[12] = bank[0]  # exact duplicate, last channel: the lower index must win every tie
    enc.filters_ = bank.reshape(-1)
    nodes, _ = enc._feature_nodes()
    assert nodes[-1].output == "unit_features"
    g = Graph({"x": tuple(enc.input_shape_)}, nodes[:-1], None, "features")  # before the L2 normalisation
    rng = np.random.default_rng(0)
    xs = np.concatenate([X[:300], rng.random((50, 8, 8)) * 16]).astype(np.float32)
    f_np = g.numpy(x=xs)
    f_t = g.to_torch()(torch.as_tensor(xs)).numpy()
    sess = ort.InferenceSession(graph_model(g).SerializeToString(), providers=["CPUExecutionProvider"])
    (f_ort,) = sess.run(None, {"x": xs})
    np.testing.assert_array_equal(f_t, f_np)
    np.testing.assert_array_equal(f_ort, f_np)
    unit = enc.feature_graph()
    u_np = unit.numpy(x=xs)
    (u_ort,) = ort.InferenceSession(graph_model(unit).SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": xs})
    np.testing.assert_array_equal(unit.to_torch()(torch.as_tensor(xs)).numpy(), u_np)
    np.testing.assert_array_equal(u_ort, u_np)
    per_filter = f_np.reshape(len(xs), 13, -1)
    assert per_filter[:, 0].any() and not per_filter[:, 12].any()
    # the exported model has one exact patch copy per kernel size, shared by the convolution and the norm
    onehot = [i for i in graph_model(g).graph.initializer if i.name.startswith("patch_onehot")]
    assert len(onehot) == len(enc.kernel_sizes)


def test_float32_accumulation_stays_available_and_close(images, small):
    X = images[0][:200]
    f64 = small.pooled_features(X)
    fast = BioConvHash(**{**small.get_params(), "accumulate": "float32"})
    fast.__dict__.update({a: v for a, v in small.__dict__.items() if a.endswith("_")})
    np.testing.assert_allclose(fast.pooled_features(X), f64, atol=1e-5)
    with pytest.raises(HashplugError, match="accumulate"):
        BioConvHash(**{**SMALL, "accumulate": "float16"}).fit(images[0])


def test_float64_layer_gives_identical_codes_on_numpy_and_onnxruntime(images, tmp_path):
    from hashplug.export import check_parity, to_onnx

    X = images[0]
    enc = BioConvHash(random_state=1, layer_accumulate="float64", **{**SMALL, "m": 400, "k": 16}).fit(X)
    assert [n.op.accumulate for n in enc.graph.nodes if n.output == "scores"] == ["float64"]
    rng = np.random.default_rng(1)
    xs = np.concatenate([X, rng.random((1000, 8, 8)) * 16]).astype(np.float32)
    par = check_parity(enc, to_onnx(enc, tmp_path / "f64.onnx"), xs)
    assert par["identical"] and par["rows_differing"] == 0, par
    with pytest.raises(HashplugError, match="layer_accumulate"):
        BioConvHash(**{**SMALL, "layer_accumulate": "double"}).fit(X)


def test_pooled_features_follow_the_load_between_batches(small, images, monkeypatch):
    """The feature pass re-chooses its thread count between batches (as training does), so a count picked
    at a busy moment does not hold for a whole long pass; the features do not depend on the batching."""
    from hashplug import _torch

    ticks = []
    tick = _torch.ThreadPolicy.tick
    monkeypatch.setattr(_torch.ThreadPolicy, "tick", lambda self: (ticks.append(self.n), tick(self))[1])
    X = images[0][:130]
    feats = small.pooled_features(X, batch_size=64)
    assert len(ticks) == 3  # one per batch: 64 + 64 + 2 images
    np.testing.assert_allclose(feats, small.pooled_features(X, batch_size=130), rtol=1e-6, atol=1e-6)
