"""MIHash: the objective (eq. 8, 11, 19-21, 29), its gradient (autograd, finite differences, eq. 50),
neighbourhoods, and the encoder (quality on digits, ONNX parity of the linear and MLP models)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hashplug.encoders import ITQ, LSH, MIHash  # noqa: E402
from hashplug.metrics import map_from_codes  # noqa: E402
from hashplug.train.mihash import (  # noqa: E402
    Neighbourhood,
    bin_centres,
    mi_gradient_closed_form,
    mutual_information,
    mutual_information_numpy,
    relaxed_codes,
    relaxed_distances,
    soft_histograms,
)
from hashplug.validation import HashplugError  # noqa: E402


def _batch(seed, M=12, b=8, classes=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    phi = torch.tanh(torch.randn(M, b, generator=g, dtype=dtype))
    y = torch.randint(0, classes, (M,), generator=g)
    return phi, y[:, None] == y[None, :]


# --------------------------------------------------------------------------------------- histograms
def test_bin_centres_run_from_0_to_b_inclusive():
    c, w = bin_centres(8)
    np.testing.assert_array_equal(c, np.arange(9.0))
    assert w == 1.0
    c, w = bin_centres(10, n_bins=4)  # floating-point width, never rounded to an int
    assert w == pytest.approx(10 / 3)
    np.testing.assert_allclose(c, [0, 10 / 3, 20 / 3, 10])
    with pytest.raises(HashplugError, match="n_bins must be an int >= 2"):
        bin_centres(8, n_bins=1)


@pytest.mark.parametrize("n_bins", [None, 3, 6, 17])
def test_soft_histogram_is_a_partition_of_unity_on_0_b(n_bins):
    b = 16
    c, w = bin_centres(b, n_bins)
    d = torch.linspace(0, b, 1001, dtype=torch.float64)
    h = soft_histograms(d, torch.as_tensor(c), w)
    np.testing.assert_allclose(h.sum(-1).numpy(), 1.0, atol=1e-12)
    assert (h >= 0).all()


def test_triangular_kernel_worked_example():
    # d = 2.25 with unit bins: 0.75 to bin 2, 0.25 to bin 3 (eq. 21)
    h = soft_histograms(torch.tensor([2.25], dtype=torch.float64), torch.arange(5, dtype=torch.float64), 1.0)
    np.testing.assert_allclose(h.numpy(), [[0, 0, 0.75, 0.25, 0]])


def test_relaxed_codes_are_2_sigmoid_minus_1():
    f = torch.linspace(-4, 4, 33, dtype=torch.float64)
    for gamma in (0.5, 1.0, 5.0):
        np.testing.assert_allclose(relaxed_codes(f, gamma).numpy(), (2 * torch.sigmoid(gamma * f) - 1).numpy(),
                                   atol=1e-12)


def test_relaxed_distance_of_exact_codes_is_the_hamming_distance():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, (7, 12))
    phi = torch.as_tensor(2.0 * bits - 1)
    ham = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    np.testing.assert_array_equal(relaxed_distances(phi).numpy(), ham)


# --------------------------------------------------------------------------------------- the objective
def test_mi_worked_example_by_hand():
    # b = 2; x1 = x2 = (+1, +1), x3 = (-1, -1); labels 0, 0, 1.
    # anchor 1: neighbour x2 at d = 0, non-neighbour x3 at d = 2, priors 1/2: I = H(C) = log 2; same for
    # anchor 2; anchor 3 has no neighbour: I = 0 (and would not be 0 if it counted itself as a neighbour).
    phi = torch.tensor([[1.0, 1.0], [1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1])
    per = mutual_information(phi, y[:, None] == y[None, :], reduction="none")
    np.testing.assert_allclose(per.numpy(), [math.log(2), math.log(2), 0.0], atol=1e-12)
    assert mutual_information(phi, y[:, None] == y[None, :]).item() == pytest.approx(2 * math.log(2) / 3)


def test_mi_is_zero_when_the_two_distance_distributions_coincide():
    # every code equal: every distance is 0 for neighbours and non-neighbours alike
    phi = torch.ones(10, 6, dtype=torch.float64)
    y = torch.tensor([0, 1] * 5)
    assert mutual_information(phi, y[:, None] == y[None, :]).item() == pytest.approx(0.0, abs=1e-12)
    # per anchor: x0 = (+1, +1) sees its neighbour x1 = (+1, -1) and its non-neighbour x2 = (-1, +1) both at
    # d = 1 (I = 0); x1 sees x0 at 1 and x2 at 2 (separated: I = H(C) = log 2); x2 has no neighbour (I = 0)
    phi = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1])
    per = mutual_information(phi, y[:, None] == y[None, :], reduction="none")
    np.testing.assert_allclose(per.numpy(), [0.0, math.log(2), 0.0], atol=1e-12)


def _entropy(p):
    return -sum(v * math.log(v) for v in (p, 1 - p) if v > 0)


def test_mi_equals_the_neighbour_entropy_when_separated():
    # three classes with codes at distance 2 from each other: neighbours at 0, non-neighbours at 2
    codes = torch.tensor([[1, 1, 1, 1], [-1, -1, 1, 1], [1, 1, -1, -1]], dtype=torch.float64)
    sizes = [3, 5, 4]
    phi = torch.cat([codes[c].expand(n, 4) for c, n in enumerate(sizes)])
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    per = mutual_information(phi, y[:, None] == y[None, :], reduction="none").numpy()
    M = sum(sizes)
    want = [_entropy((n - 1) / (M - 1)) for n in sizes for _ in range(n)]
    np.testing.assert_allclose(per, want, atol=1e-12)
    S = y[:, None] == y[None, :]
    # parameter-free (sec. 3.2): item 0 moved onto class 1's code sees its neighbours at 2 and the others at
    # 0 and 4: still no overlap, the same MI
    phi2 = phi.clone()
    phi2[0, :2] = -1.0
    assert mutual_information(phi2, S, reduction="none")[0].item() == pytest.approx(want[0], abs=1e-12)
    # item 0 at (-1, 1, 1, 1): neighbours and class 1 both at distance 1: ambiguity lowers its MI
    phi3 = phi.clone()
    phi3[0, 0] = -1.0
    assert mutual_information(phi3, S, reduction="none")[0].item() < want[0] - 0.05


def test_mi_equals_the_neighbour_entropy_for_two_separated_classes():
    b, n0, n1 = 5, 4, 7
    phi = torch.cat([torch.ones(n0, b), -torch.ones(n1, b)]).double()
    y = torch.tensor([0] * n0 + [1] * n1)
    per = mutual_information(phi, y[:, None] == y[None, :], reduction="none").numpy()
    M = n0 + n1
    want = [_entropy((n0 - 1) / (M - 1))] * n0 + [_entropy((n1 - 1) / (M - 1))] * n1
    np.testing.assert_allclose(per, want, atol=1e-12)


def test_mi_numpy_matches_torch():
    phi, S = _batch(3, M=20, b=10)
    for n_bins in (None, 4, 7):
        np.testing.assert_allclose(
            mutual_information(phi, S, n_bins).item(), mutual_information_numpy(phi.numpy(), S.numpy(), n_bins),
            rtol=1e-12,
        )


def test_mi_rejects_bad_shapes():
    with pytest.raises(HashplugError, match=r"phi must have shape \(M, b\) with M >= 2"):
        mutual_information(torch.zeros(1, 4), torch.ones(1, 1, dtype=torch.bool))
    with pytest.raises(HashplugError, match="must be square"):
        mutual_information(torch.zeros(3, 4), torch.ones(3, 2, dtype=torch.bool))


# --------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_bins", [None, 5, 13])
def test_autograd_gradient_equals_the_closed_form_of_eq_50(seed, n_bins):
    phi, S = _batch(seed, M=14, b=9)
    phi = phi.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(mutual_information(phi, S, n_bins), phi)
    np.testing.assert_allclose(g.numpy(), mi_gradient_closed_form(phi.detach(), S, n_bins).numpy(), atol=1e-12)
    assert g.abs().max() > 1e-4  # a real gradient, not zeros on both sides


def test_closed_form_with_multilabel_neighbours():
    g = torch.Generator().manual_seed(5)
    phi = torch.tanh(torch.randn(16, 8, generator=g, dtype=torch.float64)).requires_grad_(True)
    Y = (torch.rand(16, 4, generator=g) < 0.3).double()
    S = Neighbourhood("multilabels").matrix(Y)
    (grad,) = torch.autograd.grad(mutual_information(phi, S), phi)
    np.testing.assert_allclose(grad.numpy(), mi_gradient_closed_form(phi.detach(), S).numpy(), atol=1e-12)


def test_autograd_gradient_matches_finite_differences_through_a_linear_layer():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(10, 6, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    S = y[:, None] == y[None, :]
    W = (0.7 * torch.randn(6, 8, generator=g, dtype=torch.float64)).requires_grad_(True)

    def obj(w):
        return mutual_information(relaxed_codes(X @ w, 2.0), S)

    (grad,) = torch.autograd.grad(obj(W), W)
    eps = 1e-6
    num = torch.zeros_like(W)
    with torch.no_grad():
        for i in range(W.shape[0]):
            for j in range(W.shape[1]):
                Wp, Wm = W.clone(), W.clone()
                Wp[i, j] += eps
                Wm[i, j] -= eps
                num[i, j] = (obj(Wp) - obj(Wm)) / (2 * eps)
    np.testing.assert_allclose(grad.numpy(), num.numpy(), atol=1e-7)
    assert grad.abs().max() > 1e-3


# --------------------------------------------------------------------------------------- neighbourhoods
def test_neighbourhoods_from_labels_and_multilabels():
    y = np.array([0, 1, 0, 2])
    nb = Neighbourhood.from_labels(y)
    assert nb.kind == "labels"
    np.testing.assert_array_equal(nb.matrix(torch.as_tensor(y)).numpy(), y[:, None] == y[None, :])
    Y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1]])
    nb = Neighbourhood.from_labels(Y)
    assert nb.kind == "multilabels"
    want = np.array([[1, 1, 0, 0], [1, 1, 0, 1], [0, 0, 1, 1], [0, 1, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(nb.matrix(torch.as_tensor(Y)).numpy(), want)
    np.testing.assert_array_equal(nb.matrix_numpy(Y), want)
    with pytest.raises(HashplugError, match="0/1 matrix"):
        Neighbourhood.from_labels(np.array([[0, 2]]))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_distance_rule_marks_the_closest_percentile(metric):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 5))
    nb = Neighbourhood.from_distances(X, percentile=5.0, metric=metric)  # all 1,770 pairs: exact percentile
    S = nb.matrix_numpy(X)
    iu = np.triu_indices(60, 1)
    assert S[iu].mean() == pytest.approx(0.05, abs=1.0 / len(iu[0]) + 1e-9)
    np.testing.assert_array_equal(nb.matrix(torch.as_tensor(X)).numpy()[iu], S[iu])
    if metric == "cosine":  # scale-free
        np.testing.assert_array_equal(nb.matrix_numpy(3.0 * X)[iu], S[iu])


# --------------------------------------------------------------------------------------- the encoder
@pytest.fixture(scope="module")
def digits_split():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    perm = np.random.default_rng(0).permutation(len(y))
    return X[perm[300:]], y[perm[300:]], X[perm[:300]], y[perm[:300]]


@pytest.mark.parametrize("hidden", [(), (64,)])
def test_supervised_mihash_beats_lsh_and_itq_on_digits(digits_split, hidden):
    Xdb, ydb, Xq, yq = digits_split
    enc = MIHash(k=16, hidden=hidden, epochs=20, optimizer="adam", lr=0.01, batch_size=128, device="cpu",
                 random_state=0).fit(Xdb, ydb)
    got = map_from_codes(enc.encode(Xq), enc.encode(Xdb), yq, ydb)
    base = max(
        map_from_codes(e.encode(Xq), e.encode(Xdb), yq, ydb)
        for e in (LSH(k=16, random_state=0).fit(Xdb), ITQ(k=16, random_state=0).fit(Xdb))
    )
    assert got > 0.85 and got > base + 0.2, (got, base)
    assert enc.history_["mi"][-1] > enc.history_["mi"][0]  # the objective rose
    assert enc.neighbourhood_ == {"kind": "labels"}


def test_training_raises_the_test_mutual_information(digits_split):
    Xdb, ydb, Xq, yq = digits_split
    untrained = MIHash(k=16, epochs=0, random_state=0, device="cpu").fit(Xdb, ydb)
    trained = MIHash(k=16, epochs=10, optimizer="adam", lr=0.01, batch_size=128, random_state=0,
                     device="cpu").fit(Xdb, ydb)
    assert trained.mutual_information(Xq, yq, batch_size=100) > untrained.mutual_information(Xq, yq, batch_size=100) + 0.1


def test_unlabelled_fit_uses_the_distance_rule(digits_split):
    Xdb, *_ = digits_split
    enc = MIHash(k=8, epochs=2, batch_size=64, random_state=0, device="cpu", distance_metric="cosine").fit(Xdb)
    assert enc.neighbourhood_["kind"] == "distance" and enc.neighbourhood_["metric"] == "cosine"
    assert 0 < enc.neighbourhood_["threshold"] < 1


@pytest.mark.parametrize("hidden", [(), (32, 16)])
def test_mlp_and_linear_export_bit_identical(digits_split, hidden, tmp_path):
    pytest.importorskip("onnx")
    from hashplug.export import check_parity, to_onnx

    Xdb, ydb, Xq, _ = digits_split
    enc = MIHash(k=24, hidden=hidden, epochs=3, optimizer="adam", lr=0.01, batch_size=64, device="cpu",
                 random_state=1).fit(Xdb, ydb)
    assert enc.n_layers_ == len(hidden) + 1
    rep = check_parity(enc, to_onnx(enc, tmp_path / "m.onnx"), np.concatenate([Xq, Xdb]))
    assert rep["identical"], rep
    loaded = MIHash.load(enc.save(tmp_path / "m.npz"))
    np.testing.assert_array_equal(loaded.encode(Xq), enc.encode(Xq))
    assert loaded.history_ == enc.history_


def test_trained_module_is_the_exported_graph(digits_split):
    # the torch module trained is Graph.to_torch(); its scores equal the numpy graph of the fitted encoder
    Xdb, ydb, Xq, _ = digits_split
    enc = MIHash(k=12, hidden=(20,), epochs=2, optimizer="adam", lr=0.01, device="cpu", random_state=0).fit(Xdb, ydb)
    mod = enc.graph.to_torch()
    with torch.no_grad():
        t = mod(torch.as_tensor(Xq)).numpy()
    np.testing.assert_allclose(t, enc.scores(Xq), rtol=1e-5, atol=1e-5)


def test_dropout_trains_differently_and_exports_without_it(digits_split, tmp_path):
    """Dropout acts on the hidden ReLU outputs during training only: the fit differs from dropout=0 with the
    same seed, and the fitted encoder's scores (and the ONNX file's bits) are the deterministic graph's."""
    Xdb, ydb, Xq, yq = digits_split
    kw = dict(k=16, hidden=(64,), epochs=8, optimizer="adam", lr=0.01, batch_size=128, device="cpu", random_state=0)
    plain = MIHash(**kw).fit(Xdb, ydb)
    dropped = MIHash(**kw, dropout=0.3).fit(Xdb, ydb)
    assert not np.array_equal(plain.W_, dropped.W_)
    # the objective under dropout is measured on thinned networks: lower than without at the same epoch
    assert dropped.history_["mi"][-1] < plain.history_["mi"][-1]
    # still a good hash (the digits are easy), and encoding is deterministic: the hooks are gone
    assert map_from_codes(dropped.encode(Xq), dropped.encode(Xdb), yq, ydb) > 0.8
    np.testing.assert_array_equal(dropped.encode(Xq), dropped.encode(Xq))
    mod = dropped.graph.to_torch()
    with torch.no_grad():
        np.testing.assert_allclose(mod(torch.as_tensor(Xq)).numpy(), dropped.scores(Xq), rtol=1e-5, atol=1e-5)
    pytest.importorskip("onnx")
    from hashplug.export import check_parity, to_onnx

    assert check_parity(dropped, to_onnx(dropped, tmp_path / "d.onnx"), Xq)["identical"]
    assert MIHash.load(dropped.save(tmp_path / "d.npz")).get_params()["dropout"] == 0.3


@pytest.mark.parametrize(
    "params, message",
    [
        ({"hidden": "wide"}, r"'hidden' parameter of MIHash must be a tuple of ints"),
        ({"hidden": (8, 0)}, r"'hidden' parameter of MIHash must be an int in \[1, inf\]. Got 0"),
        ({"gamma": 0.0}, r"'gamma' parameter of MIHash must be a float in \(0.0, inf\]"),
        ({"n_bins": 1}, r"'n_bins' parameter of MIHash must be an int in \[2, inf\) or None"),
        ({"batch_size": 1}, r"'batch_size' parameter of MIHash must be an int in \[2, inf\]. Got 1"),
        ({"optimizer": "lbfgs"}, r"'optimizer' parameter of MIHash must be one of \['sgd', 'adam'\]"),
        ({"init": "pca", "hidden": (8,)}, "init='pca' needs the linear model"),
        ({"neighbours": "labels"}, r"needs labels: call fit\(X, y\)"),
        ({"dropout": 1.0, "hidden": (8,)}, r"'dropout' parameter of MIHash must be a float in \[0.0, 1.0\)"),
        ({"dropout": 0.2}, r"'dropout' parameter of MIHash acts on hidden layers; the linear model"),
    ],
)
def test_bad_parameters_are_named(digits_split, params, message):
    Xdb, *_ = digits_split
    with pytest.raises(HashplugError, match=message):
        MIHash(k=8, epochs=1, device="cpu", **params).fit(Xdb)


def test_labels_must_match_rows(digits_split):
    Xdb, ydb, *_ = digits_split
    with pytest.raises(HashplugError, match="y has 10 rows but X has"):
        MIHash(k=8, epochs=1, device="cpu").fit(Xdb, ydb[:10])


# --------------------------------------------------------------------------------------- user backbones
def _conv_backbone():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Flatten())


def test_a_user_backbone_trains_exports_and_serves_bit_identical(digits_split, tmp_path):
    pytest.importorskip("onnx")
    import hashplug
    from hashplug.export import check_module_parity, export_module, read_metadata
    from hashplug.train.mihash_module import fit_mihash_module

    Xdb, ydb, Xq, yq = digits_split
    img = lambda A: (A / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)  # noqa: E731
    net = fit_mihash_module(_conv_backbone(), img(Xdb), ydb, bits=16, epochs=10, optimizer="adam", lr=0.01,
                            backbone_lr_scale=1.0, device="cpu", random_state=0)
    path = export_module(net, tmp_path / "net.onnx", (1, 8, 8))
    rep = check_module_parity(net, path, img(np.concatenate([Xq, Xdb])))
    assert rep["identical"], rep
    card = read_metadata(path)
    assert (card.method, card.m, card.code_kind, card.input_shape) == ("mihash-module", 16, "dense", (1, 8, 8))
    onx = hashplug.OnnxEncoder(path)
    got = map_from_codes(onx.encode(img(Xq)), onx.encode(img(Xdb)), yq, ydb)
    assert got > 0.7, got
    assert net.history_["mi"][-1] > net.history_["mi"][0]


def test_backbone_lr_scale_zero_freezes_the_backbone(digits_split):
    from hashplug.train.mihash_module import fit_mihash_module

    Xdb, ydb, *_ = digits_split
    bb = _conv_backbone()
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    net = fit_mihash_module(bb, (Xdb / 16.0).reshape(-1, 1, 8, 8), ydb, bits=8, epochs=2, backbone_lr_scale=0.0,
                            device="cpu", weight_decay=0.0)
    for k, v in net.backbone.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(HashplugError, match="backbone must be a torch.nn.Module"):
        fit_mihash_module(lambda x: x, Xdb, ydb)


def test_rank_rule_gives_each_anchor_its_nearest_share_of_the_batch():
    X = np.array([[0.0], [1.0], [3.0], [10.0], [11.0]])
    nb = Neighbourhood("rank", share=0.25)  # round(0.25 * 4) = 1 neighbour per anchor
    S = nb.matrix_numpy(X)
    want = np.zeros((5, 5), bool)
    for i, j in [(0, 1), (1, 0), (2, 1), (3, 4), (4, 3)]:
        want[i, j] = True
    np.testing.assert_array_equal(S, want)
    np.testing.assert_array_equal(nb.matrix(torch.as_tensor(X)).numpy(), want)
    assert nb.rank_count(5) == 1 and Neighbourhood("rank", share=0.0).rank_count(5) == 1


def test_itq_start_equals_itq_codes_before_training(digits_split):
    Xdb, *_ = digits_split
    enc = MIHash(k=16, init="itq", epochs=0, device="cpu", random_state=0, neighbours="rank").fit(Xdb)
    itq = ITQ(k=16, random_state=0).fit((Xdb - enc.mean_) / enc.input_scale_)
    same = (enc.encode(Xdb) == itq.encode((Xdb - enc.mean_) / enc.input_scale_)).all(axis=1).mean()
    assert same > 0.99  # the same hyperplanes (rows exactly on one may round either way)


# --------------------------------------------------------------------------------------- knn neighbourhood
def test_knn_table_worked_example():
    """Points on a line: 0, 1, 3, 10, 11 -> nearest others by hand (Euclidean)."""
    from hashplug.train.mihash import knn_table

    X = np.array([[0.0], [1.0], [3.0], [10.0], [11.0]])
    np.testing.assert_array_equal(knn_table(X, 2), [[1, 2], [0, 2], [1, 0], [4, 2], [3, 2]])
    # cosine ignores length: (1, 0) and (5, 0) are the same direction
    Xc = np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 0.0], [1.0, 1.2]])
    np.testing.assert_array_equal(knn_table(Xc, 1, "cosine", chunk=2)[:, 0], [2, 3, 0, 1])
    with pytest.raises(HashplugError, match=r"n_neighbours must be an int in \[1, n - 1\] = \[1, 4\]; got 5"):
        knn_table(X, 5)


def test_knn_table_equals_brute_force(seed):
    from hashplug.train.mihash import knn_table

    X = np.random.default_rng(seed).standard_normal((300, 7))
    for metric in ("euclidean", "cosine"):
        A = X / np.linalg.norm(X, axis=1, keepdims=True) if metric == "cosine" else X
        D = ((A[:, None] - A[None]) ** 2).sum(-1)
        np.fill_diagonal(D, np.inf)
        np.testing.assert_array_equal(knn_table(X, 5, metric, chunk=64), np.argsort(D, axis=1)[:, :5])


def test_knn_table_is_kept_for_the_same_data_only(seed, monkeypatch):
    from hashplug.train import mihash as tm

    X = np.random.default_rng(seed).standard_normal((200, 6))
    first = tm.knn_table(X, 4)
    first[:] = -1  # the caller's copy: editing it must not reach the kept table
    calls = []
    argpartition = np.argpartition
    monkeypatch.setattr(np, "argpartition", lambda *a, **k: calls.append(1) or argpartition(*a, **k))
    again = tm.knn_table(X.copy(), 4)
    assert calls == [] and again.min() >= 0  # the same bytes: not recomputed
    X2 = X.copy()
    X2[0] = X[1] + 1e-9  # row 0 moves next to row 1: other bytes, recomputed
    moved = tm.knn_table(X2, 4)
    assert calls and moved[0, 0] == 1 and moved[1, 0] == 0
    n_calls = len(calls)
    np.testing.assert_array_equal(tm.knn_table(X, 3), again[:, :3])  # another K: recomputed
    assert len(calls) > n_calls


def test_knn_relation_and_batches():
    """j is i's neighbour when j is among i's K nearest or i among j's (torch == numpy); every minibatch holds
    M distinct rows, about group_size - 1 neighbours per anchor."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 5))
    nb = Neighbourhood.from_knn(X, n_neighbours=8, group_size=4)
    ids = rng.choice(400, 50, replace=False)
    S = nb.matrix_numpy(ids)
    table = nb.table
    want = np.array([[j in table[i] or i in table[j] for j in ids] for i in ids])
    np.testing.assert_array_equal(S, want)
    np.testing.assert_array_equal(nb.matrix(torch.as_tensor(ids)).numpy(), want)
    assert nb.describe() == {"kind": "knn", "metric": "euclidean", "n_neighbours": 8, "group_size": 4}
    batches = nb.batches(400, 64, np.random.default_rng(1))
    assert len(batches) == 400 // 64
    for b in batches:
        assert len(b) == 64 and len(set(b.tolist())) == 64
        S = nb.matrix_numpy(b)
        assert S[~np.eye(64, dtype=bool)].reshape(64, 63).sum(1).mean() >= 2.5  # random batches: 64 * 16 / 400 ~ 2.5 / 2
    plain = Neighbourhood("rank").batches(400, 64, np.random.default_rng(1))  # other kinds: a permutation
    np.testing.assert_array_equal(np.concatenate(plain), np.random.default_rng(1).permutation(400)[: 6 * 64])
    with pytest.raises(HashplugError, match="needs table"):
        Neighbourhood("knn")


def test_knn_mihash_keeps_nearest_neighbours_closer_than_the_distance_rule(digits_split, tmp_path):
    """Trained on the same budget from the same ITQ start, the knn neighbourhood puts more of each test
    item's 10 nearest training items (cosine) within its 50 nearest codes than the LabelMe distance rule."""
    from hashplug.hamming import hamming_search

    Xdb, _, Xq, _ = digits_split
    # 6 epochs: recall 0.934 (knn) vs 0.914 (distance) at seed 0, seeds 1, 2 margins 0.020, 0.013 (15 epochs, 2.5x
    # the time: 0.928 vs 0.919; margins 0.021, 0.012)
    common = dict(k=32, init="itq", epochs=6, optimizer="adam", lr=1e-3, batch_size=128, random_state=0,
                  device="cpu", distance_metric="cosine")
    Qn = Xq / np.linalg.norm(Xq, axis=1, keepdims=True)
    Dn = Xdb / np.linalg.norm(Xdb, axis=1, keepdims=True)
    true = np.argsort(-(Qn @ Dn.T), axis=1, kind="stable")[:, :10]  # each query's cosine top 10

    def recall(enc):
        top = hamming_search(enc.encode(Xq), enc.encode(Xdb), 50)[0]
        return np.mean([len(set(t) & set(r)) / 10 for t, r in zip(top.tolist(), true.tolist())])

    knn = MIHash(neighbours="knn", n_neighbours=10, **common).fit(Xdb)
    dist = MIHash(neighbours="distance", **common).fit(Xdb)
    assert knn.neighbourhood_["kind"] == "knn" and knn.neighbourhood_["n_neighbours"] == 10
    assert recall(knn) > recall(dist)
    assert knn.mutual_information(Xq, batch_size=64) > 0
    loaded = MIHash.load(knn.save(tmp_path / "knn.npz"))  # the neighbourhood is described, not stored
    assert loaded.neighbourhood_ == knn.neighbourhood_ and loaded.n_neighbours == 10
    np.testing.assert_array_equal(loaded.encode(Xq), knn.encode(Xq))
    with pytest.raises(HashplugError, match=r"'n_neighbours' parameter of MIHash must be an int in \[1, n - 1\]"):
        MIHash(k=8, epochs=1, device="cpu", neighbours="knn", n_neighbours=len(Xdb)).fit(Xdb)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_the_distance_rule_in_blocks_gives_the_threshold_of_all_pairs_at_once(metric, monkeypatch):
    """The pairs' distances are computed a block at a time (two 614 MB temporaries at 200,000 pairs of 384
    floats, before); the threshold is the same number."""
    from hashplug.train import mihash as tm

    X = np.random.default_rng(3).standard_normal((120, 16))
    monkeypatch.setattr(tm, "_PAIR_BLOCK", 7)
    got = tm.Neighbourhood.from_distances(X, percentile=5.0, metric=metric, n_pairs=1000, seed=4).threshold
    rng = np.random.default_rng(4)
    i = rng.integers(0, 120, 1000)
    j = (i + rng.integers(1, 120, 1000)) % 120
    assert got == float(np.percentile(tm._pair_distances(X[i], X[j], metric), 5.0))
