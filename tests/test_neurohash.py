"""NeuroHash: the structured-input encoder contract, its graph (numpy / torch / onnxruntime), conditional weights."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from _encoders import FAST_PARAMS, STRUCTURED_NAMES  # noqa: E402

from hashplug.encoders import get_encoder, load_encoder  # noqa: E402
from hashplug.encoders.neurohash import NeuroHash, conditional_eta  # noqa: E402
from hashplug.export import check_parity, to_onnx  # noqa: E402
from hashplug.metrics import mean_average_precision  # noqa: E402
from hashplug.runtime import OnnxEncoder  # noqa: E402
from hashplug.validation import HashplugError, NotFittedError  # noqa: E402


def scene_batch(n: int, seed: int, K: int = 3, z: int = 12, n_classes: int = 5):
    """Synthetic scenes: each object's features are its class centre plus noise; the global feature is the
    mean of the objects' centres; positions uniform; 1..K objects."""
    g = np.random.default_rng(seed)
    centres = np.random.default_rng(1234).standard_normal((n_classes, z)).astype(np.float32) * 2
    n_obj = g.integers(1, K + 1, n)
    mask = (np.arange(K)[None, :] < n_obj[:, None]).astype(np.float32)
    labels = np.where(mask > 0, g.integers(0, n_classes, (n, K)), -1)
    f = centres[np.maximum(labels, 0)] + 0.3 * g.standard_normal((n, K, z)).astype(np.float32)
    f[mask == 0] = 0.0
    glob = (f * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    pos = g.uniform(0.05, 0.95, (n, K, 2)).astype(np.float32)
    pos[mask == 0] = 0.0
    X = {"global_features": glob, "object_features": f, "object_positions": pos, "object_mask": mask}
    return X, labels


@pytest.fixture(scope="module")
def data():
    return scene_batch(300, 0)


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return NeuroHash(**FAST_PARAMS["neurohash"], random_state=0).fit(X, y)


def test_structured_encoders_are_found_by_their_tag():
    assert "neurohash" in STRUCTURED_NAMES


def test_fit_encode_contract(fitted, data):
    X, _ = data
    assert fitted.k_ == fitted.m_ == 8 and fitted.max_objects_ == 3 and fitted.n_features_in_ == 12
    assert fitted.P_.shape == (8, 2 * 128) and fitted.H_mean_.shape == (256,) and fitted.bases_.shape == (2, 128)
    codes = fitted.encode(X)
    assert codes.shape == (300, 1) and codes.dtype == np.uint8
    s = fitted.scores(X)
    np.testing.assert_array_equal(np.packbits(s > 0, axis=1), codes)
    pm1 = fitted.encode(X, layout="pm1")
    np.testing.assert_array_equal(pm1 > 0, s > 0)
    # eta defaults to ones: giving them explicitly changes nothing
    ones = {**X, "eta": np.ones((300, 3), np.float32), "eta_global": np.ones(300, np.float32)}
    np.testing.assert_array_equal(fitted.encode(ones), codes)
    # the empty batch
    assert fitted.encode({k: v[:0] for k, v in X.items()}).shape == (0, 1)
    assert set(fitted.history_) >= {"hdc_encoder", "hyperplanes", "seconds"}


def test_masked_slots_do_not_matter(fitted, data):
    X, _ = data
    X2 = {k: v.copy() for k, v in X.items()}
    pad = X2["object_mask"] == 0
    X2["object_features"][pad] = 1e3
    X2["object_positions"][pad] = 0.7
    np.testing.assert_array_equal(fitted.encode(X2), fitted.encode(X))


def test_hypervectors_are_the_spatial_bundle(fitted, data):
    from hashplug import hdc
    from hashplug.train.neurohash import hdc_encode

    X, _ = data
    arrays = {"W_ext": fitted.W_ext_, "b_ext": fitted.b_ext_, "B": fitted.B_, "b": fitted.b_}
    std = lambda a: (a - fitted.feat_mean_) / fitted.feat_scale_  # noqa: E731
    hg = hdc_encode(std(X["global_features"]), arrays)
    hf = hdc_encode(std(X["object_features"]), arrays)
    theta = hdc.positional_phases(X["object_positions"], fitted.bases_, fitted.w)
    want = hdc.spatial_hypervectors(hg, hf, theta.astype(np.float32), X["object_mask"])
    np.testing.assert_allclose(fitted.hypervectors(X), want, rtol=1e-4, atol=1e-4)


def test_numpy_torch_and_onnxruntime_agree(fitted, data, tmp_path):
    X, _ = data
    feed = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in fitted._check_X(X).items()}
    want = fitted.scores(X)
    mod = fitted.graph.to_torch()
    with torch.no_grad():
        got = mod(**{k: torch.from_numpy(v) for k, v in feed.items()}).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    path = to_onnx(fitted, tmp_path / "nh.onnx")
    rep = check_parity(fitted, path, X)
    assert rep["weights_sha256_match"] and rep["rows_differing"] == rep["rows_differing_at_ties"]
    onx = OnnxEncoder(path)
    assert onx.input_names == ("global_features", "object_features", "object_positions", "object_mask", "eta",
                               "eta_global")
    assert onx.card.multi_input and dict((n, d) for n, _, d in onx.card.inputs)["eta"] == 1.0
    # the optional inputs may be left out; a conditional eta goes through
    np.testing.assert_array_equal(onx.encode(X), fitted.encode(X))
    eta = conditional_eta(X["object_positions"], X["object_mask"], focus=0)
    np.testing.assert_array_equal(onx.encode({**X, "eta": eta}), fitted.encode({**X, "eta": eta}))
    with pytest.raises(HashplugError, match=r"missing"):
        onx.encode({k: v for k, v in X.items() if k != "object_mask"})
    with pytest.raises(HashplugError, match="mapping of named inputs"):
        onx.encode(X["global_features"])


def test_save_load_round_trip(fitted, data, tmp_path):
    X, _ = data
    p = fitted.save(tmp_path / "nh.npz")
    back = load_encoder(p)
    assert isinstance(back, NeuroHash) and back.weights_sha256() == fitted.weights_sha256()
    np.testing.assert_array_equal(back.encode(X), fitted.encode(X))


def test_parameter_and_input_errors(data):
    X, y = data
    with pytest.raises(HashplugError, match=r"The 'k' parameter of NeuroHash must be an int in \[1, inf\]. Got 0"):
        NeuroHash(k=0).fit(X, y)
    with pytest.raises(HashplugError, match=r"The 'w' parameter of NeuroHash"):
        NeuroHash(w=0.0).fit(X, y)
    with pytest.raises(HashplugError, match="the terms are"):
        NeuroHash(lambdas={"mse": 1.0, "bogus": 1.0}).fit(X, y)
    with pytest.raises(HashplugError, match="mapping of named inputs"):
        NeuroHash().fit(X["global_features"])
    with pytest.raises(HashplugError, match=r"missing"):
        NeuroHash().fit({k: v for k, v in X.items() if k != "object_positions"})
    bad = {**X, "object_positions": X["object_positions"] * 64}
    with pytest.raises(HashplugError, match="normalised by the image size"):
        NeuroHash().fit(bad)
    nan = {**X, "global_features": X["global_features"].copy()}
    nan["global_features"][3, 2] = np.nan
    with pytest.raises(HashplugError, match="NaN"):
        NeuroHash().fit(nan)
    with pytest.raises(HashplugError, match="integer classes >= 0"):
        NeuroHash(**FAST_PARAMS["neurohash"]).fit(X, np.where(X["object_mask"] > 0, -1, -1))
    with pytest.raises(NotFittedError):
        NeuroHash().encode(X)


def test_a_failed_fit_leaves_the_fitted_encoder_unchanged(fitted, data, tmp_path):
    X, y = data
    enc = load_encoder(fitted.save(tmp_path / "nh.npz"))
    before = enc.encode(X)
    with pytest.raises(HashplugError):
        enc.set_params(k=0).fit(X, y)
    enc.set_params(k=8)
    np.testing.assert_array_equal(enc.encode(X), before)


def test_encode_checks_k_slots_and_features(fitted, data):
    X, _ = data
    with pytest.raises(HashplugError, match=r"object_features has shape \(300, 2, 12\); expected \(300, 3, 12\)"):
        fitted.encode({**X, "object_features": X["object_features"][:, :2]})
    with pytest.raises(HashplugError, match="fitted on 12"):
        fitted.encode({**X, "global_features": X["global_features"][:, :5]})


def test_kmeans_pseudo_labels_without_y(data):
    X, _ = data
    enc = get_encoder("neurohash", **FAST_PARAMS["neurohash"], n_clusters=5).fit(X)
    assert enc.history_["pseudo_labels"] == "k-means (5 clusters)" and enc.C_.shape == (128, 5)


def test_trained_hyperplanes_beat_random_ones(seed):
    X, y = scene_batch(600, seed)
    Xq, yq = scene_batch(100, seed + 1)
    ml = lambda lab: np.stack([np.bincount(r[r >= 0], minlength=5) > 0 for r in lab]).astype(np.uint8)  # noqa: E731
    params = dict(k=16, D=512, z_prime=8, hdc_epochs=5, epochs=20, device="cpu", random_state=seed)
    maps = {}
    for train in (False, True):
        enc = NeuroHash(**params, train_hyperplanes=train).fit(X, y)
        Bq, Bdb = enc.encode(Xq, layout="pm1").astype(np.int32), enc.encode(X, layout="pm1").astype(np.int32)
        D = (16 - Bq @ Bdb.T) / 2
        maps[train] = mean_average_precision(D, ml(yq), ml(y), R=100, tie_aware=True)
    assert maps[True] > maps[False] + 0.03, maps


def test_conditional_eta_worked_example():
    pos = np.array([[[0.1, 0.1], [0.8, 0.8], [0.0, 0.0]]], np.float32)
    mask = np.array([[1, 1, 0]], np.float32)
    np.testing.assert_array_equal(conditional_eta(pos, mask, focus=1), [[1, 10, 0]])
    np.testing.assert_array_equal(conditional_eta(pos, mask, region=(0.5, 0.5, 1.0, 1.0), weight=4), [[1, 4, 0]])
    with pytest.raises(HashplugError, match="holds no object"):
        conditional_eta(pos, mask, focus=2)
    with pytest.raises(HashplugError, match="exactly one"):
        conditional_eta(pos, mask)


def test_focusing_an_object_moves_the_code_towards_images_with_it(fitted, data):
    """eta = 10 on an object: the query's hypervector is dominated by that object bound to its position."""
    X, _ = data
    two = np.flatnonzero(X["object_mask"].sum(1) >= 2)[:20]
    Xq = {k: v[two] for k, v in X.items()}
    from hashplug import hdc

    eta = conditional_eta(Xq["object_positions"], Xq["object_mask"], focus=1)
    H1 = fitted.hypervectors(Xq)
    Hf = fitted.hypervectors({**Xq, "eta": eta})
    only = {**Xq, "object_mask": np.eye(3, dtype=np.float32)[np.ones(len(two), int)], "eta_global": np.zeros(len(two))}
    Ho = fitted.hypervectors(only)  # object 1 alone, bound to its position
    c = hdc.similarity
    assert np.all(c(Hf, Ho) > c(H1, Ho))


def test_refit_hyperplanes_matches_a_full_fit(data):
    X, y = data
    a = NeuroHash(**{**FAST_PARAMS["neurohash"], "k": 8}, random_state=0).fit(X, y)
    b = NeuroHash(**{**FAST_PARAMS["neurohash"], "k": 16}, lambdas={"o": 0.0}, random_state=0).fit(X, y)
    a.refit_hyperplanes(X, k=16, lambdas={"o": 0.0})
    np.testing.assert_allclose(a.P_, b.P_, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(a.encode(X), b.encode(X))
    H = a.hypervectors(X)
    a.refit_hyperplanes(H=H, train_hyperplanes=False)
    assert a.history_["hyperplanes"] == [] and a.k_ == 16
    with pytest.raises(HashplugError, match="need a full fit"):
        a.refit_hyperplanes(H=H, D=64)
