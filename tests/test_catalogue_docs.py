"""The bad-input catalogue as a whole: at least 150 cases, unique ids, every public area covered, and
``docs/errors.md`` generated from it and current (regenerate with ``python tests/_catalogue.py --write``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _catalogue import all_cases, render_docs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_catalogue_size_and_ids():
    cases = all_cases()
    ids = [c.id for _, c in cases]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    assert len(cases) >= 150, len(cases)
    areas = {a for a, _ in cases}
    assert {"index", "ingest", "model", "lancedb"} <= areas, areas
    cli = [c for _, c in cases if c.exc == "exit 2"]
    assert len(cli) >= 20, len(cli)


def test_errors_doc_is_current():
    doc = ROOT / "docs" / "errors.md"
    assert doc.read_text() == render_docs(), "docs/errors.md is stale: run `python tests/_catalogue.py --write`"
