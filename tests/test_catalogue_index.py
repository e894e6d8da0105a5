"""Bad inputs of the index area (issue 27): build_hamming_index, open_hamming_index, refresh_hamming_index, hamming_index_search and
HammingIndex (construct, add, search, load) with wrong types, widths, folders, torn or tampered files and
foreign tables or models. Each gets the most specific hashplug error and changes nothing stored."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _catalogue import Case, check_case, make_world  # noqa: E402

import hashplug  # noqa: E402
from hashplug.index import HammingIndex  # noqa: E402
from hashplug.integrations import index as ix  # noqa: E402
from hashplug.validation import (  # noqa: E402
    HashplugError,
    HashplugTypeError,
    ModelFileError,
    ModelMismatchError,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import lancedb
    import pyarrow as pa

    w = make_world(tmp_path_factory.mktemp("world"))
    outside = tmp_path_factory.mktemp("index-props")  # torn and foreign folders, outside the world's root
    src = ix.default_index_folder(w.t, "code")
    name = json.loads((src / "index.json").read_text()).get("arrays_file", "index.npz")

    def tear(label, fn):
        folder = outside / label
        shutil.copytree(src, folder)
        fn(folder)
        return folder

    def manifest(edit):
        def fn(folder):
            meta = json.loads((folder / "index.json").read_text())
            edit(meta)
            (folder / "index.json").write_text(json.dumps(meta))
        return fn

    def other_words(folder):  # a valid npz of another code length under the manifest's name and sha
        from hashplug._files import sha256_arrays

        idx = HammingIndex("packed", 64)  # one uint64 word per row, as m=32, but all 64 bits used
        idx.add(np.full((300, 8), 0xA5, np.uint8), HammingIndex.load(src).row_ids)
        arrays = idx._arrays()
        np.savez(folder / name, **arrays)
        meta = json.loads((folder / "index.json").read_text())
        meta["arrays_sha256"], meta["arrays_bytes"] = sha256_arrays(arrays), (folder / name).stat().st_size
        (folder / "index.json").write_text(json.dumps(meta))

    w.extra.update(
        t_folder=src,
        truncated=tear("truncated", lambda f: (f / name).write_bytes((f / name).read_bytes()[:200])),
        missing=tear("missing", lambda f: (f / name).unlink()),
        not_json=tear("not-json", lambda f: (f / "index.json").write_text("{oops")),
        a_list=tear("a-list", lambda f: (f / "index.json").write_text("[1, 2, 3]")),
        escape=tear("escape", manifest(lambda m: m.update(arrays_file="../../world/db/t.lance/x.npz"))),
        bad_m=tear("bad-m", manifest(lambda m: m.update(m=-3))),
        future=tear("future", manifest(lambda m: m.update(format="hashplug-index/9"))),
        other_sha=tear("other-sha", manifest(lambda m: m.update(arrays_sha256="0" * 64))),
        wrong_size=tear("wrong-size", manifest(lambda m: m.update(arrays_bytes=12))),
        other_width=tear("other-width", other_words),
        foreign_model=tear("foreign-model", manifest(lambda m: m.update(model_sha256="ab" * 32))),
        plain=lancedb.connect(str(outside / "plain-db")).create_table("plain", pa.table({"a": [1, 2, 3]})),
    )
    return w


def _q(w, nbytes=4, dtype=np.uint8):
    return np.zeros((1, nbytes), dtype)


def _open(w, name="t"):
    return ix.open_hamming_index(w.table(name))


CASES = [
    # ------------------------------------------------------------------ build_hamming_index
    Case("index-build-not-a-table", "hashplug.build_hamming_index", "a str for the table", HashplugTypeError,
         r"expected a LanceDB table", lambda w: hashplug.build_hamming_index("t")),
    Case("index-build-foreign-table", "hashplug.build_hamming_index", "a LanceDB table without a hashplug column",
         HashplugError, r"hashplug", lambda w: hashplug.build_hamming_index(w.extra["plain"])),
    Case("index-build-threads-0", "hashplug.build_hamming_index", "threads=0", HashplugError, r"'threads'.*Got 0",
         lambda w: hashplug.build_hamming_index(w.t, threads=0)),
    Case("index-build-threads-str", "hashplug.build_hamming_index", "threads='2'", HashplugError, r"'threads'",
         lambda w: hashplug.build_hamming_index(w.t, threads="2")),
    Case("index-build-backend", "hashplug.build_hamming_index", "backend='simd'", HashplugError,
         r"backend must be one of", lambda w: hashplug.build_hamming_index(w.t, backend="simd")),
    Case("index-build-save-str", "hashplug.build_hamming_index", "save='no' (a truthy str)", HashplugError,
         r"save must be True or False", lambda w: hashplug.build_hamming_index(w.t, save="no")),
    Case("index-build-folder-is-a-file", "hashplug.build_hamming_index", "folder= an existing file (the ONNX model)",
         HashplugError, r"cannot create the index folder|is not a folder",
         lambda w: hashplug.build_hamming_index(w.t, folder=w.lsh_path)),
    Case("index-build-folder-under-a-file", "hashplug.build_hamming_index", "folder= a path through a file",
         HashplugError, r"cannot create the index folder", lambda w: hashplug.build_hamming_index(w.t, folder=w.lsh_path / "x")),
    Case("index-build-folder-type", "hashplug.build_hamming_index", "folder=123", HashplugTypeError,
         r"folder must be a file path", lambda w: hashplug.build_hamming_index(w.t, folder=123)),
    Case("index-build-column-missing", "hashplug.build_hamming_index", "column='nope'", HashplugError, r"nope",
         lambda w: hashplug.build_hamming_index(w.t, column="nope")),
    # ------------------------------------------------------------------ open_hamming_index / refresh_hamming_index
    Case("index-open-not-a-table", "hashplug.open_hamming_index", "a dict for the table", HashplugTypeError,
         r"expected a LanceDB table", lambda w: hashplug.open_hamming_index({"t": 1})),
    Case("index-open-foreign-table", "hashplug.open_hamming_index", "a LanceDB table without a hashplug column",
         HashplugError, r"hashplug", lambda w: hashplug.open_hamming_index(w.extra["plain"])),
    Case("index-open-backend", "hashplug.open_hamming_index", "backend='gpu'", HashplugError, r"backend must be one of",
         lambda w: hashplug.open_hamming_index(w.t, backend="gpu")),
    Case("index-open-threads-negative", "hashplug.open_hamming_index", "threads=-1", HashplugError, r"'threads'",
         lambda w: hashplug.open_hamming_index(w.t, threads=-1)),
    Case("index-open-update-str", "hashplug.open_hamming_index", "update='no'", HashplugError,
         r"update must be True or False", lambda w: hashplug.open_hamming_index(w.t, update="no")),
    Case("index-open-folder-type", "hashplug.open_hamming_index", "folder=[1]", HashplugTypeError,
         r"folder must be a file path", lambda w: hashplug.open_hamming_index(w.t, folder=[1])),
    Case("index-open-foreign-model", "hashplug.open_hamming_index", "an index of this table built from another model",
         ModelMismatchError, r"built from model sha256 abababababab.*rebuild it",
         lambda w: hashplug.open_hamming_index(w.t, folder=w.extra["foreign_model"])),
    Case("index-refresh-not-a-table", "hashplug.refresh_hamming_index", "None for the table", HashplugTypeError,
         r"expected a LanceDB table", lambda w: hashplug.refresh_hamming_index(None)),
    Case("index-refresh-folder-is-a-file", "hashplug.refresh_hamming_index", "folder= an existing file", HashplugError,
         r"cannot create the index folder|is not a folder", lambda w: hashplug.refresh_hamming_index(w.t, folder=w.fly_path)),
    Case("index-refresh-threads-0", "hashplug.refresh_hamming_index", "threads=0", HashplugError, r"'threads'",
         lambda w: hashplug.refresh_hamming_index(w.t, threads=0)),
    # ------------------------------------------------------------------ hamming_index_search
    Case("index-search-limit-0", "hashplug.integrations.index.hamming_index_search", "limit=0", HashplugError,
         r"limit must be >= 1", lambda w: ix.hamming_index_search(_open(w), w.t, _q(w), 0)),
    Case("index-search-limit-float", "hashplug.integrations.index.hamming_index_search", "limit=2.5", HashplugError,
         r"limit must be an int", lambda w: ix.hamming_index_search(_open(w), w.t, _q(w), 2.5)),
    Case("index-search-limit-bool", "hashplug.integrations.index.hamming_index_search", "limit=True", HashplugError,
         r"limit must be an int", lambda w: ix.hamming_index_search(_open(w), w.t, _q(w), True)),
    Case("index-search-narrow-query", "hashplug.integrations.index.hamming_index_search",
         "2-byte query codes for 4-byte codes (m=32)", HashplugError, r"shape \(nq, 4\) for this index of m=32",
         lambda w: ix.hamming_index_search(_open(w), w.t, _q(w, 2), 3)),
    Case("index-search-wide-query", "hashplug.integrations.index.hamming_index_search", "32-byte query codes for m=32",
         HashplugError, r"shape \(nq, 4\)", lambda w: ix.hamming_index_search(_open(w), w.t, _q(w, 32), 3)),
    Case("index-search-float-query", "hashplug.integrations.index.hamming_index_search", "float32 query codes",
         HashplugError, r"packed uint8 codes", lambda w: ix.hamming_index_search(_open(w), w.t, _q(w, 4, np.float32), 3)),
    Case("index-search-1d-query", "hashplug.integrations.index.hamming_index_search", "a 1-d code (no query axis)",
         HashplugError, r"shape \(nq, 4\)", lambda w: ix.hamming_index_search(_open(w), w.t, np.zeros(4, np.uint8), 3)),
    Case("index-search-unit-too-large", "hashplug.integrations.index.hamming_index_search",
         "unit 256 in a query of an m=256 k-hot index", HashplugError, r"\[0, m=256\)",
         lambda w: ix.hamming_index_search(_open(w, "s"), w.s, [np.array([3, 256])], 3)),
    Case("index-search-unit-negative", "hashplug.integrations.index.hamming_index_search", "unit -1 in a k-hot query",
         HashplugError, r"\[0, m=256\)", lambda w: ix.hamming_index_search(_open(w, "s"), w.s, [np.array([-1, 4])], 3)),
    Case("index-search-unit-float", "hashplug.integrations.index.hamming_index_search", "float units [1.5]",
         HashplugError, r"1-d int array of active units", lambda w: ix.hamming_index_search(_open(w, "s"), w.s, [np.array([1.5])], 3)),
    Case("index-search-flat-unit-list", "hashplug.integrations.index.hamming_index_search",
         "one flat list [3, 4] instead of a list of queries", HashplugError, r"1-d int array",
         lambda w: ix.hamming_index_search(_open(w, "s"), w.s, [3, 4], 3)),
    Case("index-search-where-not-str", "hashplug.integrations.index.hamming_index_search", "where=5", HashplugError,
         r"where must be an SQL filter string", lambda w: ix.hamming_index_search(_open(w), w.t, _q(w), 3, where=5)),
    Case("index-search-where-bad-sql", "hashplug.integrations.index.hamming_index_search", "where='nope = 1'",
         HashplugError, r"where filter 'nope = 1' failed in LanceDB",
         lambda w: ix.hamming_index_search(_open(w), w.t, _q(w), 3, where="nope = 1")),
    # ------------------------------------------------------------------ HammingIndex
    Case("index-hi-layout", "hashplug.index.HammingIndex", "layout='dense'", HashplugError,
         r"layout must be 'packed' or 'indices'", lambda w: HammingIndex("dense", 32)),
    Case("index-hi-m-0", "hashplug.index.HammingIndex", "m=0", HashplugError, r"m must be an int >= 1",
         lambda w: HammingIndex("packed", 0)),
    Case("index-hi-m-float", "hashplug.index.HammingIndex", "m=32.5", HashplugError, r"m must be an int",
         lambda w: HammingIndex("packed", 32.5)),
    Case("index-hi-add-width", "HammingIndex.add", "3-byte codes into an m=32 index", HashplugError,
         r"shape \(n, 4\) for m=32",
         lambda w: HammingIndex.load(w.extra["t_folder"]).add(np.zeros((2, 3), np.uint8), [10**9, 10**9 + 1])),
    Case("index-hi-add-float-ids", "HammingIndex.add", "row ids [1.5]", HashplugError, r"row ids must be integers",
         lambda w: HammingIndex.load(w.extra["t_folder"]).add(np.zeros((1, 4), np.uint8), [1.5])),
    Case("index-hi-add-id-again", "HammingIndex.add", "a row id already in the index", HashplugError,
         r"unique and not already in the index",
         lambda w: HammingIndex.load(w.extra["t_folder"]).add(np.zeros((1, 4), np.uint8), [0])),
    Case("index-hi-add-id-count", "HammingIndex.add", "3 ids for 2 codes", HashplugError, r"3 row ids for 2 codes",
         lambda w: HammingIndex.load(w.extra["t_folder"]).add(np.zeros((2, 4), np.uint8), [10**9, 10**9 + 1, 7])),
    Case("index-hi-add-unit-range", "HammingIndex.add", "unit 300 into an m=256 k-hot index", HashplugError,
         r"active units must lie in \[0, m=256\)",
         lambda w: HammingIndex("indices", 256).add((np.array([0, 2]), np.array([1, 300])), [1])),
    Case("index-hi-add-offsets", "HammingIndex.add", "decreasing offsets", HashplugError,
         r"offsets must be non-decreasing",
         lambda w: HammingIndex("indices", 256).add((np.array([0, 3, 1]), np.array([1, 2, 3])), [1, 2])),
    Case("index-hi-add-not-a-pair", "HammingIndex.add", "a bare array for k-hot codes", HashplugError,
         r"pair \(offsets \(n \+ 1,\), values\)",
         lambda w: HammingIndex("indices", 256).add(np.array([1, 2, 3]), [1])),
    Case("index-hi-load-missing", "HammingIndex.load", "a folder that does not exist", ModelFileError,
         r"holds no hashplug index", lambda w: HammingIndex.load(w.root / "no-such-index")),
    Case("index-hi-load-a-file", "HammingIndex.load", "the path of a file (the ONNX model)", ModelFileError,
         r"is not a folder", lambda w: HammingIndex.load(w.lsh_path)),
    Case("index-hi-load-truncated", "HammingIndex.load", "arrays file cut after 200 bytes", ModelFileError,
         r"holds 200 bytes|corrupt", lambda w: HammingIndex.load(w.extra["truncated"])),
    Case("index-hi-load-arrays-missing", "HammingIndex.load", "a manifest naming a missing arrays file",
         ModelFileError, r"which is missing", lambda w: HammingIndex.load(w.extra["missing"])),
    Case("index-hi-load-not-json", "HammingIndex.load", "index.json is not JSON", ModelFileError,
         r"index.json is corrupt", lambda w: HammingIndex.load(w.extra["not_json"])),
    Case("index-hi-load-json-list", "HammingIndex.load", "index.json holds a JSON list", ModelFileError,
         r"not a hashplug index manifest", lambda w: HammingIndex.load(w.extra["a_list"])),
    Case("index-hi-load-path-escape", "HammingIndex.load", "a manifest naming '../../world/db/t.lance/x.npz'",
         ModelFileError, r"not one a save writes", lambda w: HammingIndex.load(w.extra["escape"])),
    Case("index-hi-load-bad-m", "HammingIndex.load", "a manifest with m=-3", ModelFileError, r"m=-3",
         lambda w: HammingIndex.load(w.extra["bad_m"])),
    Case("index-hi-load-future-format", "HammingIndex.load", "format 'hashplug-index/9'", ModelFileError,
         r"index format 'hashplug-index/9'", lambda w: HammingIndex.load(w.extra["future"])),
    Case("index-hi-load-sha", "HammingIndex.load", "arrays that do not match the manifest's sha256",
         ModelFileError, r"does not match its recorded sha256", lambda w: HammingIndex.load(w.extra["other_sha"])),
    Case("index-hi-load-size", "HammingIndex.load", "a manifest with the wrong arrays size", ModelFileError,
         r"bytes but the manifest says 12", lambda w: HammingIndex.load(w.extra["wrong_size"])),
    Case("index-hi-load-other-width", "HammingIndex.load", "64-bit words under a manifest saying m=32",
         ModelFileError, r"set bits past m=32", lambda w: HammingIndex.load(w.extra["other_width"])),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, world, capsys):
    check_case(case, world, capsys)


def test_torn_and_foreign_indexes_never_fail_a_search(world):
    """The same torn files under a table's own index folder: open_hamming_index rebuilds (a warning), never raises."""
    for key in ("truncated", "missing", "not_json", "a_list", "escape", "bad_m", "future", "other_sha",
                "wrong_size", "other_width"):
        with pytest.warns(RuntimeWarning, match="torn or corrupt"):
            idx = ix.open_hamming_index(world.t, folder=world.extra[key])
        assert len(idx) == world.t.count_rows()
