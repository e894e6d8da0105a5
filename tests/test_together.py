"""The grouping of costly shared fixtures under pytest-xdist (``tests/_together.py``, conftest's scheduler)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _together import TOGETHER_ID, together  # noqa: E402


@pytest.mark.parametrize(("nodeid", "group"), [
    ("tests/test_a.py::test_x[together-ray]", "together-ray"),
    ("tests/test_a.py::test_x[together-crash-api-before-first-commit]", "together-crash"),
    ("tests/test_a.py::test_x[together-ray-14_ray.py]", "together-ray"),
    ("tests/test_a.py::test_x[packed-together-ray]", "together-ray"),
    ("tests/test_a.py::test_x[packed-auto]", None),
    ("tests/test_a.py::test_x[not_together-ray]", None),
    ("tests/test_a.py::test_together_ray", None),
])
def test_a_test_id_names_its_group(nodeid, group):
    m = TOGETHER_ID.search(nodeid)
    assert (m.group(1) if m else None) == group


def test_together_gives_one_param_named_for_the_group():
    (p,) = together("ray", 2)
    assert p.values == (2,) and p.id == "together-ray"
    with pytest.raises(ValueError, match="lower-case"):
        together("Ray-Cluster")
