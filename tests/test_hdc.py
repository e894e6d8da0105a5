"""HDC identities (NeuroHash section III-A): bundling, binding, permutation, similarity, the encoders."""

from __future__ import annotations

import numpy as np
import pytest

from hashplug import hdc
from hashplug.validation import HashplugError

D = 10_000


def test_similarity_worked_example():
    a = np.array([1.0, 0.0, 1.0, 0.0])
    b = np.array([1.0, 1.0, 0.0, 0.0])
    # a . b = 1, |a| = |b| = sqrt(2): cos = 1/2
    assert hdc.similarity(a, b) == pytest.approx(0.5)
    assert hdc.similarity(a, -a) == pytest.approx(-1.0)
    assert hdc.similarity(a, np.zeros(4)) == 0.0
    # complex: Re(<[1, i], conj([1, 1])>) = Re(1 + i) = 1; |.| = sqrt(2) each
    assert hdc.similarity(np.array([1, 1j]), np.array([1, 1])) == pytest.approx(0.5)
    S = hdc.similarity_matrix(np.stack([a, b]), np.stack([a, b, -a]))
    np.testing.assert_allclose(S, [[1, 0.5, -1], [0.5, 1, -0.5]])


def test_bundling_is_similar_to_each_term(seed):
    H = hdc.random_bipolar(3, D, seed)
    s = hdc.bundle(H)
    # each term: (D + noise) / (|s| sqrt(D)), |s| ~ sqrt(3 D): similarity ~ 1/sqrt(3) = 0.577
    for h in H:
        assert hdc.similarity(s, h) == pytest.approx(1 / np.sqrt(3), abs=0.03)
    # unrelated random hypervector: ~ 0
    assert abs(hdc.similarity(s, hdc.random_bipolar(1, D, seed + 1)[0])) < 0.05
    # weights: the heavy term dominates
    sw = hdc.bundle(H, weights=[10.0, 1.0, 1.0])
    assert hdc.similarity(sw, H[0]) > 0.95 > hdc.similarity(s, H[0])
    # worked example, weighted along axis 1
    x = np.arange(6.0).reshape(1, 3, 2)
    np.testing.assert_allclose(hdc.bundle(x, weights=[1.0, 0.0, 2.0], axis=1), [[0 + 8, 1 + 10]])


@pytest.mark.parametrize("kind", ["bipolar", "phasor"])
def test_binding_preserves_similarity_exactly_for_unit_magnitude_keys(seed, kind):
    g = np.random.default_rng(seed)
    a = g.standard_normal(D)
    b = a + 0.7 * g.standard_normal(D)  # correlated with a
    v = hdc.random_bipolar(1, D, seed)[0] if kind == "bipolar" else hdc.random_phasors(1, D, seed)[0]
    assert hdc.similarity(hdc.bind(v, a), hdc.bind(v, b)) == pytest.approx(hdc.similarity(a, b), abs=1e-9)
    # and the bound vector is dissimilar to both factors
    assert abs(hdc.similarity(hdc.bind(v, a), a)) < 0.05
    assert abs(hdc.similarity(hdc.bind(v, a), v)) < 0.05


def test_binding_with_a_gaussian_key_preserves_similarity_approximately(seed):
    g = np.random.default_rng(seed)
    a = g.standard_normal(D)
    b = a + 0.7 * g.standard_normal(D)
    v = g.standard_normal(D)
    # E[v^2 a b] / sqrt(E[v^2 a^2] E[v^2 b^2]): with E v^4 = 3 the ratio shrinks a little, not to 0
    s0, s1 = hdc.similarity(a, b), hdc.similarity(hdc.bind(v, a), hdc.bind(v, b))
    assert s1 == pytest.approx(s0, abs=0.06)


def test_permutation_decorrelates_and_is_invertible(seed):
    h = hdc.random_bipolar(1, D, seed)[0]
    assert abs(hdc.similarity(hdc.permute(h), h)) < 0.05
    np.testing.assert_array_equal(hdc.permute(hdc.permute(h, 3), -3), h)
    np.testing.assert_array_equal(hdc.permute(np.array([1, 2, 3, 4.0])), [4, 1, 2, 3])
    # permutation preserves similarity between two permuted vectors
    k = h.copy()
    k[: D // 4] *= -1
    assert hdc.similarity(hdc.permute(h, 5), hdc.permute(k, 5)) == pytest.approx(hdc.similarity(h, k))


def test_random_feature_encoder_formula_and_similarity(seed):
    enc = hdc.RandomFeatureEncoder(5, D, random_state=seed)
    F = np.random.default_rng(seed).standard_normal((3, 5)).astype(np.float32)
    z = F @ enc.B_
    np.testing.assert_allclose(enc(F), np.cos(z + enc.b_) * np.sin(z), rtol=1e-5, atol=1e-6)
    # similarity of the encodings against the exact kernel. With z_j = x_j . B_col ~ N(0, s_j), cov c, and
    # b ~ U[0, 2 pi): E_b[cos(z1 + b) cos(z2 + b)] = cos(z1 - z2) / 2, and
    # E[sin z1 sin z2 cos(z1 - z2)] = (e^-2vm - e^-2vp) / 8 + (1 - e^-2s1 - e^-2s2 + (e^-2vm + e^-2vp) / 2) / 4
    # with vm = s1 + s2 - 2c, vp = s1 + s2 + 2c. Unrelated inputs do not go to 0: the floor is ~ 1/2.
    def kernel(x1, x2):
        s1, s2, c = x1 @ x1, x2 @ x2, x1 @ x2
        vm, vp = s1 + s2 - 2 * c, s1 + s2 + 2 * c
        e = np.exp
        return 0.5 * ((e(-2 * vm) - e(-2 * vp)) / 8 + (1 - e(-2 * s1) - e(-2 * s2) + (e(-2 * vm) + e(-2 * vp)) / 2) / 4)

    x0 = F[0].astype(np.float64)
    for x in (x0 + 0.01 * F[1], x0 + 0.3 * F[1], F[1].astype(np.float64) * 3):
        expected = kernel(x0, x) / np.sqrt(kernel(x0, x0) * kernel(x, x))
        got = hdc.similarity(enc(x0[None].astype(np.float32))[0], enc(x[None].astype(np.float32))[0])
        assert got == pytest.approx(expected, abs=0.03)
    near = hdc.similarity(enc(F[:1])[0], enc((F[0] + 0.01 * F[1])[None])[0])
    far = hdc.similarity(enc(F[:1])[0], enc((3 * F[1])[None])[0])
    assert near > 0.95 and far < 0.6
    with pytest.raises(HashplugError, match="n_features=4"):
        enc(np.zeros((2, 4)))


def test_positional_similarity_falls_with_distance_and_faster_for_smaller_w(seed):
    bases = hdc.positional_bases(D, seed)
    p0 = np.array([0.5, 0.5])
    ds = np.array([0.0, 0.05, 0.1, 0.2, 0.4])
    pts = p0 + np.stack([ds, np.zeros_like(ds)], axis=1)
    curves = {}
    for w in (0.1, 1.0, 10.0):
        H = hdc.positional_hypervectors(pts, bases, w)
        np.testing.assert_allclose(np.abs(H), 1.0)
        s = hdc.similarity(H[:1], H)
        curves[w] = s
        assert np.all(np.diff(s) < 1e-3)  # falls (non-increasing up to noise) with distance
        np.testing.assert_allclose(s, hdc.expected_positional_similarity(ds, w), atol=0.03)
    # faster for smaller w at every non-zero distance
    assert np.all(curves[0.1][1:] < curves[1.0][1:]) and np.all(curves[1.0][1:] < curves[10.0][1:])
    # binding of x and y: exp(i x B_X / w) * exp(i y B_Y / w)
    hx = np.exp(1j * 0.3 * bases[0] / 0.5)
    hy = np.exp(1j * 0.7 * bases[1] / 0.5)
    np.testing.assert_allclose(hdc.positional_hypervectors(np.array([0.3, 0.7]), bases, 0.5), hx * hy, atol=1e-6)


def test_bind_phases_is_the_real_form_of_complex_binding(seed):
    g = np.random.default_rng(seed)
    h = g.standard_normal((4, 64))
    theta = hdc.positional_phases(g.uniform(size=(4, 2)), hdc.positional_bases(64, seed), 0.3)
    re, im = hdc.bind_phases(h, theta)
    z = h * np.exp(1j * theta)
    np.testing.assert_allclose(re, z.real)
    np.testing.assert_allclose(im, z.imag)


def test_torch_and_numpy_agree(seed):
    torch = pytest.importorskip("torch")
    g = np.random.default_rng(seed)
    a, b = g.standard_normal((3, 32)), g.standard_normal((3, 32))
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    np.testing.assert_allclose(hdc.similarity(ta, tb).numpy(), hdc.similarity(a, b), rtol=1e-10)
    np.testing.assert_allclose(hdc.similarity_matrix(ta, tb).numpy(), hdc.similarity_matrix(a, b), rtol=1e-10)
    np.testing.assert_allclose(hdc.permute(ta, 2).numpy(), hdc.permute(a, 2))
    np.testing.assert_allclose(hdc.bundle(ta, weights=[1.0, 2.0, 3.0]).numpy(), hdc.bundle(a, weights=[1, 2, 3]))
    enc = hdc.RandomFeatureEncoder(32, 16, random_state=seed)
    np.testing.assert_allclose(enc(ta.float()).numpy(), enc(a.astype(np.float32)), rtol=1e-4, atol=1e-5)
    bases = hdc.positional_bases(16, seed)
    xy = g.uniform(size=(3, 2))
    np.testing.assert_allclose(
        hdc.positional_hypervectors(torch.from_numpy(xy), torch.from_numpy(bases.astype(np.float64)), 0.2).numpy(),
        hdc.positional_hypervectors(xy, bases, 0.2),
        rtol=1e-5,
        atol=1e-5,
    )


def test_errors_name_the_value_and_the_fix():
    with pytest.raises(HashplugError, match="equal lengths"):
        hdc.bind(np.ones(3), np.ones(4))
    with pytest.raises(HashplugError, match="'w' parameter"):
        hdc.positional_phases(np.zeros((1, 2)), np.zeros((2, 4)), 0.0)
    with pytest.raises(HashplugError, match=r"\(\.\.\., 2\)"):
        hdc.positional_phases(np.zeros((1, 3)), np.zeros((2, 4)), 1.0)
    with pytest.raises(HashplugError, match="NaN"):
        hdc.similarity(np.array([np.nan, 1.0]), np.ones(2))
    with pytest.raises(HashplugError, match="one weight per hypervector"):
        hdc.bundle(np.ones((3, 4)), weights=[1.0, 2.0])
    with pytest.raises(HashplugError, match="stacking axis"):
        hdc.bundle(np.ones((3, 4)), axis=1)


def test_spatial_hypervectors_is_the_real_form_of_the_weighted_bundle(seed):
    g = np.random.default_rng(seed)
    n, K, Dh = 3, 4, 32
    hg = g.standard_normal((n, Dh)).astype(np.float32)
    hf = g.standard_normal((n, K, Dh)).astype(np.float32)
    theta = g.uniform(-3, 3, (n, K, Dh)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], np.float32)
    eta = g.uniform(0.5, 2, (n, K)).astype(np.float32)
    etag = np.array([1.0, 0.0, 3.0], np.float32)
    H = hdc.spatial_hypervectors(hg, hf, theta, mask, eta, etag)
    for i in range(n):
        z = etag[i] * hg[i].astype(np.complex128)
        for k in range(K):
            if mask[i, k]:
                z = z + eta[i, k] * hdc.bind(hf[i, k], np.exp(1j * theta[i, k].astype(np.float64)))
        np.testing.assert_allclose(H[i], np.concatenate([z.real, z.imag]), rtol=1e-5, atol=1e-5)
    # a masked slot contributes nothing whatever it holds
    hf2 = hf.copy()
    hf2[0, 3] = 1e6
    np.testing.assert_array_equal(hdc.spatial_hypervectors(hg, hf2, theta, mask, eta, etag), H)
    torch = pytest.importorskip("torch")
    Ht = hdc.spatial_hypervectors(*(torch.from_numpy(a) for a in (hg, hf, theta, mask, eta, etag)))
    np.testing.assert_allclose(Ht.numpy(), H, rtol=1e-5, atol=1e-5)
    with pytest.raises(HashplugError, match=r"\(3, 4\)"):
        hdc.spatial_hypervectors(hg, hf, theta, mask[:, :3])
