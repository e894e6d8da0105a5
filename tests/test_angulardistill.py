"""AngularDistillHash: the teacher (angular agreement), the listwise KL objective checked by hand, and the
encoder (labels ignored, quality over its own ITQ start on digits, errors)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hashplug.encoders import ITQ, AngularDistillHash  # noqa: E402
from hashplug.encoders.angulardistill import angular_agreement, angular_distill_objective  # noqa: E402
from hashplug.validation import HashplugError  # noqa: E402


def _cosine_recall(enc, q, db, R=10, candidates=50):
    """Share of each query's exact cosine top R found among its ``candidates`` nearest codes (Hamming)."""
    cq, cdb = enc.encode(q, layout="pm1"), enc.encode(db, layout="pm1")
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    dn = db / np.linalg.norm(db, axis=1, keepdims=True)
    true = np.argsort(-(qn @ dn.T), axis=1, kind="stable")[:, :R]
    ham = np.argsort(-(cq @ cdb.T), axis=1, kind="stable")[:, :candidates]
    return float(np.mean([len(set(t) & set(h)) / R for t, h in zip(true, ham)]))


def test_angular_agreement_at_known_angles():
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [-1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    A = angular_agreement(x)
    assert A[0, 1] == pytest.approx(1.0)  # same direction, any scale
    assert A[0, 2] == pytest.approx(0.0)  # orthogonal: half the random-hyperplane bits agree
    assert A[0, 3] == pytest.approx(-1.0)  # opposite
    assert A[0, 4] == pytest.approx(0.5)  # 45 degrees: 1 - 2 (pi / 4) / pi
    torch.testing.assert_close(A, A.T)


def test_objective_by_hand_on_three_items():
    phi = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]], dtype=torch.float64)  # s = phi phi^T / 2
    teacher = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, -0.5], [0.0, -0.5, 1.0]], dtype=torch.float64)
    tau = 0.5
    s = (phi @ phi.T / 2).numpy()
    t = teacher.numpy()
    kls = []
    for i in range(3):
        j = [a for a in range(3) if a != i]
        p = np.exp(t[i, j] / tau) / np.exp(t[i, j] / tau).sum()
        q = np.exp(s[i, j] / tau) / np.exp(s[i, j] / tau).sum()
        kls.append(float((p * np.log(p / q)).sum()))
    # anchor 0: teacher (0.5, 0) -> p = (e, 1) / (e + 1); student s = (0, -1) -> q = (e^2, 1) / (e^2 + 1)
    e = math.e
    p0 = np.array([e, 1.0]) / (e + 1)
    q0 = np.array([e**2, 1.0]) / (e**2 + 1)
    assert kls[0] == pytest.approx(float((p0 * np.log(p0 / q0)).sum()))
    got = angular_distill_objective(phi, teacher, tau)
    assert float(got) == pytest.approx(-np.mean(kls), rel=1e-12)


def test_objective_is_zero_when_the_student_ranks_as_the_teacher_and_negative_otherwise(seed):
    g = torch.Generator().manual_seed(seed)
    phi = torch.tanh(torch.randn(16, 8, generator=g, dtype=torch.float64))
    own = phi @ phi.T / 8
    assert float(angular_distill_objective(phi, own, 0.1)) == pytest.approx(0.0, abs=1e-12)
    # a constant per anchor changes neither softmax
    assert float(angular_distill_objective(phi, own + torch.arange(16.0, dtype=torch.float64)[:, None], 0.1)) == (
        pytest.approx(0.0, abs=1e-12))
    other = angular_agreement(torch.randn(16, 5, generator=g, dtype=torch.float64))
    assert float(angular_distill_objective(phi, other, 0.1)) < -1e-3


def test_gradient_matches_finite_differences(seed):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(10, 6, generator=g, dtype=torch.float64, requires_grad=True)
    teacher = angular_agreement(torch.randn(10, 4, generator=g, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda f: angular_distill_objective(torch.tanh(f), teacher, 0.2), (f,))


def test_fit_ignores_labels_and_tags_say_so(digits, seed):
    X, y = digits
    a = AngularDistillHash(k=16, epochs=2, batch_size=64, n_neighbours=8, device="cpu", random_state=seed).fit(X)
    b = AngularDistillHash(k=16, epochs=2, batch_size=64, n_neighbours=8, device="cpu", random_state=seed).fit(X, y)
    np.testing.assert_array_equal(a.encode(X), b.encode(X))
    assert not a.__hashplug_tags__().uses_labels
    assert a.neighbourhood_ == {"kind": "angular", "metric": "cosine", "n_neighbours": 8, "group_size": 8}
    assert len(a.history_["neg_kl"]) == 2


def test_training_keeps_more_cosine_neighbours_than_its_itq_start(digits, seed):
    """Digits, 32 bits: the cosine top 10 among the 50 nearest codes, trained vs the untrained ITQ start
    (measured 0.922 vs 0.896 for ITQ; a floor, not the figure)."""
    X, _ = digits
    idx = np.random.default_rng(seed).permutation(len(X))
    q, db = X[idx[:200]], X[idx[200:]]
    params = dict(k=32, temperature=0.05, lr=1e-3, epochs=20, batch_size=128, n_neighbours=16, device="cpu",
                  random_state=seed)
    start = AngularDistillHash(**{**params, "epochs": 0}).fit(db)
    trained = AngularDistillHash(**params).fit(db)
    r0, r1 = _cosine_recall(start, q, db), _cosine_recall(trained, q, db)
    assert r1 > r0 + 0.01
    assert r1 > _cosine_recall(ITQ(k=32, random_state=seed).fit(db), q, db)
    h = trained.history_["neg_kl"]
    assert h[-1] > h[0]  # the objective rose


def test_errors_name_the_value_and_the_fix(digits):
    X, _ = digits
    with pytest.raises(HashplugError, match=r"'temperature' parameter of AngularDistillHash .* Got 0"):
        AngularDistillHash(k=8, temperature=0, device="cpu").fit(X)
    with pytest.raises(HashplugError, match=r"'n_neighbours' .* \[1, 9\] for 10 training rows. Got 20"):
        AngularDistillHash(k=8, n_neighbours=20, device="cpu").fit(X[:10])
    with pytest.raises(HashplugError, match="init='itq' needs the linear model"):
        AngularDistillHash(k=8, hidden=(16,), device="cpu").fit(X)
    enc = AngularDistillHash(k=8, epochs=1, n_neighbours=4, device="cpu", random_state=0).fit(X[:100])
    with pytest.raises(HashplugError, match="Use MIHash"):
        enc.mutual_information(X[:100])
