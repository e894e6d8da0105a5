"""NeuroHash's hyperplane start (init="pca_itq") and L_u normalisation (issue 30)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("scipy")

from hashplug.encoders.neurohash import NeuroHash, pca_itq_start, principal_directions  # noqa: E402
from hashplug.train.neurohash import hyperplane_losses  # noqa: E402
from hashplug.validation import HashplugError  # noqa: E402


def test_l_u_normalised_is_divided_by_l_squared():
    codes = torch.tensor([[1.0, 1.0, 1.0, -1.0], [1.0, 1.0, 1.0, 1.0]])
    S = torch.eye(2)
    # row sums 2 and 4: (4 + 16) / 2 = 10 as printed, / 16 normalised
    assert float(hyperplane_losses(codes, S)["u"]) == pytest.approx(10.0)
    assert float(hyperplane_losses(codes, S, u_normalized=True)["u"]) == pytest.approx(10.0 / 16)


def test_principal_directions_match_numpy_svd():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 30)) @ np.diag(np.linspace(3, 0.1, 30))
    V = principal_directions(X, 5, seed=1)
    _, _, Vt = np.linalg.svd(X - X.mean(0), full_matrices=False)
    for j in range(5):
        assert abs(abs(V[:, j] @ Vt[j]) - 1) < 1e-8
    with pytest.raises(HashplugError, match="must be in"):
        principal_directions(X, 30)


def test_pca_itq_start_projections_have_unit_std_and_balanced_bits():
    rng = np.random.default_rng(0)
    H = rng.normal(size=(300, 64)).astype(np.float32) @ rng.normal(size=(64, 64)).astype(np.float32)
    H -= H.mean(0)
    P, b = pca_itq_start(H, 8, seed=0)
    Hn = H / np.linalg.norm(H, axis=1, keepdims=True)
    proj = Hn @ P.T + b
    assert proj.std() == pytest.approx(1.0, rel=1e-4)
    assert np.abs((proj >= 0).mean(0) - 0.5).max() < 0.15  # ITQ on centred PCA scores: bits near balanced


def test_init_and_u_normalized_are_validated_at_fit():
    X = {"global_features": np.ones((4, 3), np.float32), "object_features": np.ones((4, 1, 3), np.float32),
         "object_positions": np.full((4, 1, 2), 0.5, np.float32), "object_mask": np.ones((4, 1), np.float32)}
    with pytest.raises(HashplugError, match="The 'init' parameter of NeuroHash must be one of"):
        NeuroHash(k=2, D=16, init="zeros").fit(X)
    with pytest.raises(HashplugError, match="'u_normalized' parameter of NeuroHash must be a bool"):
        NeuroHash(k=2, D=16, u_normalized="yes").fit(X)
