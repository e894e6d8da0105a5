"""Registry-driven encoder parameters shared by the encoder tests.

``ALL_ENCODERS`` lists every registered method (from :func:`hashplug.available_encoders`) with small,
fast parameters, so a newly registered encoder is picked up by the parametrized tests (and
``test_every_registered_encoder_has_fast_params`` fails until it gets an entry here).
"""

from __future__ import annotations

from typing import Any

import hashplug

# Small, fast settings: every fit on sklearn digits (1797 x 64) takes well under a second.
FAST_PARAMS: dict[str, dict[str, Any]] = {
    "biohash": {"k": 4, "m": 40, "epochs": 5, "lr": 0.2, "device": "cpu"},
    "bioconvhash": {"k": 4, "m": 40, "n_filters": 8, "kernel_sizes": (3,), "kci": 2, "pool_size": 3,
                    "filter_epochs": 2, "n_patches": 2000, "epochs": 5, "lr": 0.2, "init": "data",
                    "device": "cpu", "image_shape": (8, 8)},
    "mihash": {"k": 8, "hidden": (16,), "epochs": 3, "batch_size": 64, "optimizer": "adam", "lr": 0.01,
               "device": "cpu"},
    "dpsh": {"k": 8, "epochs": 3, "batch_size": 64, "optimizer": "adam", "lr": 0.01, "device": "cpu"},
    "angulardistill": {"k": 8, "epochs": 3, "batch_size": 64, "n_neighbours": 8, "group_size": 4, "lr": 0.01,
                       "device": "cpu"},
    "naivebiohash": {"k": 8, "epochs": 5, "lr": 0.2, "device": "cpu"},
    "flyhash": {"k": 8, "expansion": 2},
    "itq": {"k": 8, "n_iter": 10},
    "lsh": {"k": 8},
    "pcahash": {"k": 8},
    "sh": {"k": 8},
    "neurohash": {"k": 8, "D": 128, "z_prime": 8, "hdc_epochs": 2, "epochs": 2, "device": "cpu"},
}

ALL_ENCODERS: list[tuple[str, dict[str, Any]]] = [
    (name, dict(FAST_PARAMS.get(name, {}))) for name in hashplug.available_encoders()
]
#: Encoders of arrays (vectors or images): the array contract tests run on these. Encoders tagged
#: ``input_kind="structured"`` (several named inputs) have their own contract tests (tests/test_neurohash.py).
ENCODER_NAMES: list[str] = [
    name for name, _ in ALL_ENCODERS if hashplug.encoders.get_tags(name).input_kind != "structured"
]
STRUCTURED_NAMES: list[str] = [
    name for name, _ in ALL_ENCODERS if hashplug.encoders.get_tags(name).input_kind == "structured"
]

# Which encoders are randomised, iterative, ... is in their tags (hashplug.encoders.get_tags), not here.


def make_encoder(name: str, random_state: int | None = 0, **overrides: Any) -> hashplug.encoders.BaseEncoder:
    """``get_encoder(name, **FAST_PARAMS[name], random_state=..., **overrides)``."""
    params = {**FAST_PARAMS.get(name, {}), "random_state": random_state, **overrides}
    return hashplug.get_encoder(name, **params)
