"""One word per idea (docs/architecture.md, Vocabulary): public signatures, CLI options and docs use the 0.2
words; the 0.1.0 words keep working for one release with a DeprecationWarning (or a line on stderr) and give
the same answers as the new ones."""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from _encoders import make_encoder

import hashplug
from hashplug.codes import INDEX_DTYPE, LAYOUTS, indices_to_packed, pack_bits, packed_to_indices

ROOT = Path(__file__).resolve().parents[1]

#: Parameter names of 0.1.0 that no public signature may show any more (they live on only as deprecated
#: keywords behind ``hashplug._deprecation.renamed_kwargs``, which keeps them out of the signature).
OLD_PARAMETERS = {"R": "limit", "format": "layout", "use_index": "use_hamming_index"}

#: Modules whose public callables (their ``__all__``) are checked. ``k`` may be a parameter only where it
#: is the number of active units, i.e. in the modules that build or convert codes.
PUBLIC_MODULES = [
    "hashplug", "hashplug.codes", "hashplug.hamming", "hashplug.metrics", "hashplug.ranking", "hashplug.runtime",
    "hashplug.index", "hashplug.integrations.lancedb", "hashplug.integrations.index", "hashplug.integrations.ingest",
    "hashplug.integrations.arrow", "hashplug.integrations.reranker", "hashplug.encoders", "hashplug.integrations.ray",
]
K_MEANS_ACTIVE_UNITS = {"hashplug.codes", "hashplug.ranking", "hashplug.encoders", "hashplug.graph.heads"}


def _public_callables():
    for modname in PUBLIC_MODULES:
        mod = importlib.import_module(modname)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            names = list(getattr(mod, "__all__", []))
            for name in names:
                obj = getattr(mod, name)
                if inspect.isclass(obj):
                    for attr, meth in vars(obj).items():
                        if (not attr.startswith("_") or attr == "__init__") and callable(meth):
                            yield f"{modname}.{name}.{attr}", meth, obj.__module__
                elif callable(obj):
                    yield f"{modname}.{name}", obj, getattr(obj, "__module__", modname)


def _params(fn) -> list[str]:
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return []


def test_no_public_signature_shows_a_0_1_0_word():
    seen, bad = 0, []
    for where, fn, home in _public_callables():
        if (fn.__doc__ or "").startswith("Deprecated"):  # a 0.1.0 name kept for one release: its old words stay
            continue
        params = _params(fn)
        seen += 1
        bad += [f"{where}({p}=): use {OLD_PARAMETERS[p]}=" for p in params if p in OLD_PARAMETERS]
        if "k" in params and not any(home == m or home.startswith(m + ".") for m in K_MEANS_ACTIVE_UNITS):
            bad.append(f"{where}(k=) outside the code modules: k is the number of active units only")
    assert seen > 100, seen  # the walk reached the public API
    assert not bad, bad


def test_search_keeps_limit_and_use_hamming_index_in_its_signature():
    params = _params(hashplug.search)
    assert "limit" in params and "use_hamming_index" in params
    assert "k" not in params and "use_index" not in params
    assert hashplug.search.__deprecated_kwargs__ == {"k": "limit", "use_index": "use_hamming_index"}


# --------------------------------------------------------------------------- old names: warn, same answer
def _same(old, new):
    with pytest.warns(DeprecationWarning, match="deprecated"):
        got = old()
    want = new()
    if isinstance(want, tuple):
        assert len(got) == len(want)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_array_equal(got, want)


def _codes(seed=0, n=30, m=24):
    rng = np.random.default_rng(seed)
    return pack_bits(rng.random((n, m)) < 0.5)


def test_hamming_topk_is_hamming_search_in_the_old_order():
    from hashplug.hamming import hamming_search, hamming_topk

    P = _codes()
    ids, dist = hamming_search(P[:5], P, 7)
    _same(lambda: hamming_topk(P[:5], P, 7), lambda: (dist, ids))
    _same(lambda: hamming_topk(P[:5], P, R=7), lambda: (dist, ids))
    assert ids.dtype == np.int64 and dist.dtype == np.int32
    assert np.all(np.diff(dist, axis=1) >= 0) and np.array_equal(ids[:, 0], np.arange(5))


def test_r_is_limit_in_the_metrics():
    from hashplug import metrics
    from hashplug.hamming import rank_distances

    rng = np.random.default_rng(1)
    d = rng.integers(0, 5, (4, 12))
    _same(lambda: rank_distances(d, R=3), lambda: rank_distances(d, limit=3))
    Q, DB = _codes(2, 8), _codes(3, 40)
    yq, ydb = rng.integers(0, 3, 8), rng.integers(0, 3, 40)
    _same(lambda: metrics.map_from_codes(Q, DB, yq, ydb, R=10), lambda: metrics.map_from_codes(Q, DB, yq, ydb, limit=10))
    with pytest.raises(hashplug.HashplugTypeError, match="got both R= .* and limit="):
        metrics.map_from_codes(Q, DB, yq, ydb, R=10, limit=10)


def test_layout_was_format(digits):
    X = digits[0][:40]
    enc = make_encoder("biohash").fit(digits[0])
    _same(lambda: enc.encode(X, format="indices"), lambda: enc.encode(X, layout="indices"))
    from hashplug import codes

    with pytest.warns(DeprecationWarning):
        assert codes.FORMATS == LAYOUTS


def _khot_names():
    return [n for n in hashplug.available_encoders() if hashplug.encoders.get_tags(n).code_kind == "khot"
            and hashplug.encoders.get_tags(n).input_kind != "structured"]


@pytest.mark.parametrize("name", _khot_names())
def test_indices_are_int32_everywhere(name, digits, tmp_path):
    from hashplug.export import to_onnx

    X = digits[0]
    enc = make_encoder(name).fit(X)
    idx = enc.encode(X[:20], layout="indices")
    assert idx.dtype == INDEX_DTYPE == np.int32
    onx = hashplug.OnnxEncoder(to_onnx(enc, tmp_path / f"{name}.onnx"))
    np.testing.assert_array_equal(onx.encode(X[:20], layout="indices"), idx)
    assert onx.encode(X[:20], layout="indices").dtype == np.int32
    packed = enc.encode(X[:20])
    assert packed_to_indices(packed, enc.m_).dtype == np.int32
    np.testing.assert_array_equal(indices_to_packed(idx, enc.m_), packed)


def test_khot_encoders_exist_for_the_dtype_test():
    assert len(_khot_names()) >= 2  # the parametrization above is not empty


# --------------------------------------------------------------------------- the two kinds of index
@pytest.fixture
def table(tmp_path, digits):
    from hashplug.export import to_onnx

    X = digits[0]
    enc = make_encoder("lsh").fit(X)
    path = to_onnx(enc, tmp_path / "lsh.onnx")
    res = hashplug.ingest(str(tmp_path / "db"), X[:300], name="t", model=str(path), progress=False)
    return res.table, X


def test_hamming_index_and_lancedb_index_have_their_own_names(table):
    from hashplug.integrations import lancedb as hl

    tbl, X = table
    _same(lambda: hashplug.build_index(tbl).search(hl.query_code(tbl, X[3])[None], 5),
          lambda: hashplug.build_hamming_index(tbl).search(hl.query_code(tbl, X[3])[None], 5))
    _same(lambda: hashplug.open_index(tbl).search(hl.query_code(tbl, X[4])[None], 5),
          lambda: hashplug.open_hamming_index(tbl).search(hl.query_code(tbl, X[4])[None], 5))
    old = hashplug.search(tbl, X[3], limit=5)
    with pytest.warns(DeprecationWarning, match="keyword k= is deprecated"):
        via_k = hashplug.search(tbl, X[3], k=5)
    assert via_k.column("_rowid" if "_rowid" in via_k.column_names else "_distance").to_pylist() == \
        old.column("_rowid" if "_rowid" in old.column_names else "_distance").to_pylist()
    with pytest.warns(DeprecationWarning, match="keyword use_index= is deprecated"):
        lance_path = hashplug.search(tbl, X[3], limit=5, use_index=False)
    assert lance_path.schema.metadata[b"hashplug.search_path"] == b"lancedb"
    assert old.schema.metadata[b"hashplug.search_path"] == b"hashplug-index"
    with pytest.warns(DeprecationWarning, match="create_index is deprecated"):
        hl.create_index(tbl)
    assert [i.index_type for i in tbl.list_indices()] == ["IvfFlat"]


# --------------------------------------------------------------------------- the CLI
def _parsers(parser: argparse.ArgumentParser, path: str = "hashplug"):
    parser.format_help()  # the bench suites are added when the bench parser is first used
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


#: option -> the commands where it is a 0.1.0 name (its help must say so); elsewhere it must not exist,
#: except where it means the 0.2 idea (``--k``: active units; ``--limit``: results).
OLD_OPTIONS = {"--R": "--limit", "--index": "--lancedb-index", "--code": "--layout"}


def test_cli_options_use_the_words():
    from hashplug.cli import build_parser

    bad, n_bench = [], 0
    for path, parser in _parsers(build_parser()):
        helps = {opt: (a.help or "") for a in parser._actions for opt in a.option_strings}
        bench = path.startswith("hashplug bench ")
        n_bench += bench
        for opt, new in OLD_OPTIONS.items():
            if opt in helps and not helps[opt].startswith(f"deprecated 0.1.0 name of {new}"):
                bad.append(f"{path} {opt}: {helps[opt]!r}")
        if bench:
            for opt, new in (("--k", "--lengths"), ("--limit", "--max-rows")):
                if opt in helps and not helps[opt].startswith(f"deprecated 0.1.0 name of {new}"):
                    bad.append(f"{path} {opt}: {helps[opt]!r}")
        elif "--limit" in helps and "result" not in helps["--limit"]:
            bad.append(f"{path} --limit is not a result count: {helps['--limit']!r}")
        elif "--k" in helps and not (helps["--k"].startswith("deprecated 0.1.0 name of --limit")
                                    or "active units" in helps["--k"]):
            bad.append(f"{path} --k: {helps['--k']!r}")
    assert n_bench >= 15, n_bench
    assert not bad, bad


def test_old_cli_options_still_work_and_say_so(table, capsys, tmp_path):
    from hashplug.cli import main

    tbl, X = table
    q = ["search", "--db", str(tmp_path / "db"), "--table", "t", "--query", str(X[5].tolist())]
    assert main([*q, "--limit", "4"]) == 0
    new = capsys.readouterr()
    assert main([*q, "--k", "4"]) == 0
    old = capsys.readouterr()
    assert old.out == new.out and "--k is deprecated" in old.err
    p = tmp_path / "x.npy"
    np.save(p, X[:50].astype(np.float32))
    model = tmp_path / "lsh.onnx"
    assert main(["ingest", "--db", str(tmp_path / "db2"), "--table", "a", "--model", str(model), str(p),
                 "--index"]) == 0
    err = capsys.readouterr().err
    assert "--index is deprecated" in err and "--lancedb-index" in err
    assert main(["ingest", "--db", str(tmp_path / "db3"), "--table", "a", "--model", str(model), str(p),
                 "--hamming-index", "--lancedb-index"]) == 0
    out = capsys.readouterr().out
    assert "Hamming index built: 50 rows" in out and "LanceDB index built" in out
    assert (tmp_path / "db3" / "a.lance.hashplug-index").is_dir()


def test_bench_old_flags_parse_to_the_new_ones(capsys):
    from hashplug.cli import build_parser

    parser = build_parser()
    old = parser.parse_args(["bench", "encode", "--limit", "300", "--k", "8", "16"])
    err = capsys.readouterr().err
    new = parser.parse_args(["bench", "encode", "--max-rows", "300", "--lengths", "8", "16"])
    assert (old.max_rows, old.lengths) == (new.max_rows, new.lengths) == (300, [8, 16])
    assert "--limit is deprecated" in err and "--k is deprecated" in err


# --------------------------------------------------------------------------- docs
#: 0.1.0 spellings that README and docs must not teach (the Vocabulary table names them once, as old).
DOC_PATTERNS = {
    r"(?<!\w)(build_index|open_index|refresh_index|index_search)\(": "the Hamming index functions",
    r"(?<![\w.])create_index\(": "create_lancedb_index (LanceDB's table.create_index is fine)",
    r"\bhamming_topk\b": "hamming_search",
    r"\bformat=\"?(packed|indices|pm1)": "layout=",
    r"\buse_index=": "use_hamming_index=",
    r"\bR=\d": "limit=",
    r"hashplug bench [a-z0-9-]+[^`\n]* --k \d": "--lengths",
    r"hashplug bench [a-z0-9-]+[^`\n]* --limit \d": "--max-rows",
    r"hashplug ingest [^`\n]*--index\b": "--lancedb-index / --hamming-index",
}


def _doc_files():
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_docs_teach_the_words():
    bad = []
    for path in _doc_files():
        text = path.read_text()
        if path.name == "architecture.md":  # its Vocabulary table lists the old words as old
            start = text.index("## Vocabulary")
            text = text[:start] + text[text.index("Check the shape of the house", start):]
        # the README's one paragraph that names the 0.1.0 words as old (blanked, so line numbers stay right)
        text = re.sub(r"^\*\*Names in 0\.2\*\*.*?\n\n", lambda m: "\n" * m.group(0).count("\n"), text,
                      flags=re.S | re.M)
        for pat, fix in DOC_PATTERNS.items():
            for m in re.finditer(pat, text):
                line = text.count("\n", 0, m.start()) + 1
                bad.append(f"{path.name}:{line}: {m.group(0)!r} -> {fix}")
    assert len(_doc_files()) >= 4
    assert not bad, "\n".join(bad)


def test_doc_patterns_catch_the_old_words():
    """The patterns above are live: each finds its 0.1.0 spelling in a line of 0.1.0's README."""
    old = ("hashplug.build_index(table); create_index(tbl); hamming_topk(Q, DB, 5); enc.encode(X, format=\"indices\"); "
           "search(t, x, use_index=False); precision(R=10)\n`hashplug bench biohash-mnist --k 16 --limit 300`\n"
           "`hashplug ingest --db d --table t x.npy --index`")
    hits = {pat for pat in DOC_PATTERNS if re.search(pat, old)}
    assert hits == set(DOC_PATTERNS), set(DOC_PATTERNS) - hits
