"""A new encoder needs only its own file: a toy defined here goes through every room of the house.

The toy (:class:`ToyKHot`, a random expansion nudged towards the data for a few epochs, k-hot code) is
registered for this module only and taken through fit, save/load, ``hashplug train``, ONNX export with
onnxruntime parity, the LanceDB function (ingest + ``hashplug.search``) and the paper-table benchmark.
No package file knows its name: the CLI and the benchmarks learn what they need from its tags and presets.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hashplug
from hashplug.encoders import BaseEncoder, EncoderTags, Preset, get_tags, register_encoder, unregister_encoder
from hashplug.graph import Affine, MatMul, Op
from hashplug.validation import check_int_param

TOY = "toykhot"
REPO = Path(__file__).resolve().parents[1]


class ToyKHot(BaseEncoder):
    """Toy: m = expansion * k random units, each nudged towards the samples it wins for ``epochs`` epochs.

    Code: the k units with the largest ``(x - mean) @ W``. Parameters as a real encoder has them: ``k``,
    ``expansion``, the iterative trio ``epochs`` / ``verbose`` / ``device`` and ``random_state``.
    """

    code_kind = "khot"
    _array_attrs = ("mean_", "W_")
    presets = {"mnist": Preset({"expansion": 3, "epochs": 2}, source="hand-set in tests/test_toy_encoder.py")}

    @classmethod
    def __hashplug_tags__(cls) -> EncoderTags:
        return replace(super().__hashplug_tags__(), display_name="ToyKHot", iterative=True, randomized=True)

    def __init__(
        self,
        k: int = 4,
        expansion: int = 4,
        epochs: int = 3,
        verbose: bool = False,
        device: str = "cpu",
        random_state: int | None = None,
    ) -> None:
        self.k = k
        self.expansion = expansion
        self.epochs = epochs
        self.verbose = verbose
        self.device = device
        self.random_state = random_state

    def _validate_params(self, n_features: int) -> None:
        kk = check_int_param(self.k, "k", "ToyKHot", 1, None)
        e = check_int_param(self.expansion, "expansion", "ToyKHot", 2, None)
        check_int_param(self.epochs, "epochs", "ToyKHot", 0, None)
        self.m_, self.k_ = e * kk, kk

    def _fit(self, X: np.ndarray, y: Any) -> None:
        rng = np.random.default_rng(self.random_state)
        self.mean_ = X.mean(axis=0).astype(np.float32)
        Xc = X - self.mean_
        W = rng.standard_normal((X.shape[1], self.m_)).astype(np.float32)
        for _ in range(int(self.epochs)):
            win = np.argmax(Xc @ W, axis=1)
            for j in np.unique(win):
                W[:, j] = 0.5 * W[:, j] + 0.5 * Xc[win == j].mean(axis=0)
        self.W_ = W.astype(np.float32)

    def _ops(self) -> list[Op]:
        return [Affine(scale=np.float32(1.0), shift=-self.mean_), MatMul(self.W_)]


@pytest.fixture(scope="module", autouse=True)
def toy_registered():
    """Register the toy for this module; afterwards the registry is as before."""
    before = dict(hashplug.encoders.ENCODERS)
    register_encoder(TOY)(ToyKHot)
    yield
    unregister_encoder(TOY)
    assert hashplug.encoders.ENCODERS == before


@pytest.fixture(scope="module")
def vectors(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, Path]:
    X = np.random.default_rng(0).standard_normal((200, 16)).astype(np.float32)
    path = tmp_path_factory.mktemp("toy") / "vectors.npy"
    np.save(path, X)
    return X, path


def test_no_package_file_knows_the_toy():
    hits = [
        str(p.relative_to(REPO))
        for folder in ("hashplug", "export", "integrations")
        for p in (REPO / folder).rglob("*")
        if p.is_file() and p.suffix in (".py", ".json", ".toml", ".md") and "toykhot" in p.read_text().lower()
    ]
    assert hits == []


def test_registry_and_tags():
    assert TOY in hashplug.available_encoders()
    assert hashplug.encoders.encoder_class("ToyKHot") is ToyKHot
    tags = get_tags(TOY)
    assert (tags.display_name, tags.code_kind, tags.iterative, tags.k_independent) == ("ToyKHot", "khot", True, False)


def test_fit_save_load(vectors, tmp_path):
    X, _ = vectors
    enc = hashplug.get_encoder(TOY, k=3, random_state=1).fit(X)
    assert (enc.k, enc.m_, enc.k_) == (3, 12, 3)
    codes = enc.encode(X, layout="indices")
    assert codes.shape == (200, 3)
    loaded = hashplug.load_encoder(enc.save(tmp_path / "toy.npz"))
    assert type(loaded) is ToyKHot and loaded.get_params() == enc.get_params()
    np.testing.assert_array_equal(loaded.encode(X), enc.encode(X))


def test_cli_train_then_onnx_parity(vectors, tmp_path, capsys):
    from hashplug.cli import main
    from hashplug.export import check_parity

    X, path = vectors
    model, onnx_path = tmp_path / "toy.npz", tmp_path / "toy.onnx"
    rc = main(["train", TOY, "--data", str(path), "--k", "4", "--out", str(model), "--onnx", str(onnx_path),
               "--param", "epochs=2", "--seed", "3"])
    assert rc == 0
    assert "trained ToyKHot (m=16, k=4)" in capsys.readouterr().out
    enc = hashplug.load_encoder(model)
    # from the tags: a seed because it is randomized, a progress bar because it trains over epochs
    assert enc.get_params() == {"k": 4, "expansion": 4, "epochs": 2, "verbose": True, "device": "cpu",
                                "random_state": 3}
    rep = check_parity(enc, onnx_path, X)
    assert rep["identical"], rep
    onx = hashplug.OnnxEncoder(onnx_path)
    assert (onx.method_name, onx.m, onx.k, onx.code_kind) == (TOY, 16, 4, "khot")
    np.testing.assert_array_equal(onx.encode(X, layout="indices"), enc.encode(X, layout="indices"))


def test_lancedb_function_ingest_and_search(vectors, tmp_path):
    pytest.importorskip("lancedb")
    from hashplug.export import to_onnx

    X, _ = vectors
    enc = hashplug.get_encoder(TOY, k=4, random_state=0).fit(X)
    onnx_path = to_onnx(enc, tmp_path / "toy.onnx")
    res = hashplug.ingest(tmp_path / "db", X, name="toy", model=str(onnx_path), layout="indices",
                          columns={"id": np.arange(len(X))}, progress=False)
    assert res.table.count_rows() == len(X)
    hits = hashplug.search(res.table, X[17], limit=5, columns=["id"], exact=True)
    assert hits["_distance"][0].as_py() == 0
    assert 17 in hits["id"].to_pylist()


def test_table_bench_runs_the_toy_from_its_preset(tiny_mnist, tmp_path):
    from hashplug.bench import biohash_tables as bt

    assert "ToyKHot" in bt.table_methods("mnist")  # it has a preset for mnist: it is in the default list
    out = tmp_path / "t.json"
    res = bt.run_table("mnist", tiny_mnist, ks=[2, 4], seeds=1, methods=["ToyKHot", "lsh"], out=out, epochs=1,
                       limit=200, verbose=False)
    # the methods asked for, then the fair protocol's reference rows (chance floor, float ceiling)
    assert list(res["rows"]) == ["ToyKHot", "LSH", "chance", "float"]
    assert res["rows"]["chance"]["2"] < res["rows"]["float"]["2"]
    assert set(res["rows"]["ToyKHot"]) == {"2", "4"}
    assert res["paper"]["ToyKHot"] == {}  # not in the paper: "-" in the table
    assert res["hyperparameters"]["ToyKHot"] == {"expansion": 3, "epochs": 2}
    assert res["m"]["ToyKHot"] == {"2": 6, "4": 12}
    assert set(res["seconds_per_epoch"]) == {"ToyKHot"}
    assert json.loads(out.read_text())["codes_sha256"]["ToyKHot"]["4"]
    text = bt.format_table(res)
    assert "ToyKHot" in text and "-" in text
