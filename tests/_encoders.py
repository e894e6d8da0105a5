"""Registry-driven encoder parameters shared by the encoder tests.

Every registered encoder states its own small, fast settings in its class (``_test_params``, checked at
class creation); nothing here lists encoder names. ``ALL_ENCODERS`` pairs every registered method (from
:func:`hashplug.available_encoders`) with them, so a newly registered encoder is picked up by the
parametrized tests; ``FAST_PARAMS`` is the same as a mapping (read from the classes).
"""

from __future__ import annotations

from typing import Any

import hashplug


def fast_params(name: str) -> dict[str, Any]:
    """The fast test settings the encoder class registered as ``name`` declares (``_test_params``)."""
    return dict(hashplug.encoders.ENCODERS[name]._test_params)


#: name -> fast settings, read from each registered class's ``_test_params`` (a fit on sklearn digits
#: (1797 x 64) takes well under a second).
FAST_PARAMS: dict[str, dict[str, Any]] = {name: fast_params(name) for name in hashplug.available_encoders()}

ALL_ENCODERS: list[tuple[str, dict[str, Any]]] = [(name, fast_params(name)) for name in hashplug.available_encoders()]
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
    """``get_encoder(name, **<its _test_params>, random_state=..., **overrides)``."""
    params = {**fast_params(name), "random_state": random_state, **overrides}
    return hashplug.get_encoder(name, **params)
