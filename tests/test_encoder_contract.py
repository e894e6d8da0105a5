"""The encoder contract finished (issue 28, deliverable 4).

``hashplug train`` passes labels to encoders tagged ``uses_labels`` (and refuses to train them without) and
starts from the encoder's preset for a reference dataset; encoders are scikit-learn transformers (``Pipeline``,
``check_is_fitted``, scikit-learn's own estimator checks); each encoder declares its fast test settings; one
training loop (:mod:`hashplug.train.loop`) runs every trainer; the contract, the registry and the files are
three modules (``encoders/base.py`` re-exports them); ``save`` is atomic.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _encoders import ALL_ENCODERS, ENCODER_NAMES, make_encoder

import hashplug
from hashplug.cli import main
from hashplug.encoders import get_tags
from hashplug.validation import HashplugError, HashplugTypeError, ModelFileError

torch = pytest.importorskip("torch")
sklearn = pytest.importorskip("sklearn")

LABELLED = [n for n in ENCODER_NAMES if get_tags(n).uses_labels]
UNLABELLED = [n for n in ENCODER_NAMES if not get_tags(n).uses_labels]


@pytest.fixture(scope="module")
def files(digits, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """300 digits rows as a labelled .npz (X, y) and as an unlabelled .npy."""
    X, y = digits
    folder = tmp_path_factory.mktemp("contract")
    np.savez(folder / "labelled.npz", X=X[:300], y=y[:300])
    np.save(folder / "vectors.npy", X[:300])
    return {"labelled": folder / "labelled.npz", "vectors": folder / "vectors.npy"}


def _cli_params(name: str) -> list[str]:
    """``--param`` pairs of an encoder's fast test settings (``k`` goes to ``--k``)."""
    import json

    return [a for key, v in make_encoder(name).get_params().items() if key not in ("k", "random_state", "verbose")
            for a in ("--param", f"{key}={json.dumps(list(v) if isinstance(v, tuple) else v)}")]


def _train(name: str, data: Path | str, out: Path, *extra: str) -> int:
    return main(["train", name, "--data", str(data), "--k", str(make_encoder(name).k), "--out", str(out),
                 *_cli_params(name), *extra])


# ------------------------------------------------------------------------------------------ train: labels
@pytest.mark.parametrize("name", LABELLED)
def test_train_gives_labels_to_the_encoders_that_use_them_and_only_to_them(name, files, digits, tmp_path, capsys):
    """Before: ``X, _ = _load_xy(...)``: MIHash / DPSH trained on a labelled file by their unsupervised rule."""
    X, y = digits[0][:300], digits[1][:300]
    out = tmp_path / "m.npz"
    assert _train(name, files["labelled"], out) == 0
    got = hashplug.load_encoder(out)
    assert got.weights_sha256() == make_encoder(name).fit(X, y).weights_sha256()
    assert got.neighbourhood_["kind"] == "labels"
    assert "labels: 10 classes" in capsys.readouterr().out
    # an encoder without the tag is trained on the same file as on X alone
    other = UNLABELLED[0]
    assert _train(other, files["labelled"], out) == 0
    assert hashplug.load_encoder(out).weights_sha256() == make_encoder(other).fit(X).weights_sha256()
    assert "labels:" not in capsys.readouterr().out


@pytest.mark.parametrize("name", LABELLED)
def test_train_refuses_an_encoder_that_uses_labels_on_unlabelled_data(name, files, tmp_path, capsys):
    out = tmp_path / "m.npz"
    assert _train(name, files["vectors"], out) == 2
    err = capsys.readouterr().err
    assert "learns from labels" in err and "has none" in err and "--unsupervised" in err and "vectors.npy" in err
    assert not out.exists()
    # the explicit opt-out trains it by its unsupervised rule, also on labelled data
    assert _train(name, files["labelled"], out, "--unsupervised") == 0
    assert hashplug.load_encoder(out).neighbourhood_["kind"] != "labels"


# ------------------------------------------------------------------------------------------ train: presets
def test_train_starts_from_the_dataset_preset_printed_and_overridable(tmp_path, capsys):
    """Before: ``hashplug train biohash --data digits`` used the class defaults (digits: mAP 52.1 vs 76.5)."""
    preset = hashplug.encoders.get_preset("biohash", "digits")
    out = tmp_path / "m.npz"
    argv = ["train", "biohash", "--data", "digits", "--k", "4", "--out", str(out), "--scale", "16",
            "--param", "epochs=1", "--param", "device=\"cpu\""]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "preset BioHash/digits at k=4" in printed and "--param overrides device, epochs" in printed
    assert preset.source in printed
    params = hashplug.load_encoder(out).get_params()
    assert {p: params[p] for p in preset.for_k(4) if p != "epochs"} == {
        p: v for p, v in preset.for_k(4).items() if p != "epochs"
    }
    assert params["epochs"] == 1  # --param wins over the preset
    assert main([*argv, "--no-preset"]) == 0
    printed = capsys.readouterr().out
    assert "preset" not in printed
    assert hashplug.load_encoder(out).get_params()["lr"] == hashplug.encoders.BioHash().lr


def test_train_says_when_the_preset_expects_scaled_inputs(tmp_path, capsys):
    out = tmp_path / "m.npz"
    assert main(["train", "lsh", "--data", "digits", "--k", "4", "--out", str(out)]) == 0
    assert "preset" not in capsys.readouterr().out  # LSH has no digits preset: nothing to say
    assert main(["train", "biohash", "--data", "digits", "--k", "4", "--out", str(out), "--param", "epochs=1",
                 "--param", "device=\"cpu\""]) == 0
    assert "pass --scale 16" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ scikit-learn
@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_an_encoder_is_a_pipeline_step(name, digits):
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.utils.validation import check_is_fitted

    X, y = digits
    enc = make_encoder(name)
    with pytest.raises(sklearn.exceptions.NotFittedError):
        check_is_fitted(enc)
    pipe = Pipeline([("hash", enc), ("knn", KNeighborsClassifier(n_neighbors=5))]).fit(X[:1500], y[:1500])
    check_is_fitted(pipe["hash"])
    codes = pipe["hash"].transform(X[1500:])
    assert codes.dtype == np.int8 and codes.shape == (297, pipe["hash"].m_)
    np.testing.assert_array_equal(codes, pipe["hash"].encode(X[1500:], layout="pm1"))
    assert pipe.predict(X[1500:]).shape == (297,)
    assert len(pipe["hash"].get_feature_names_out()) == pipe["hash"].m_


def test_check_is_fitted_on_a_structured_encoder_and_a_loaded_one(fitted_lsh_path):
    from sklearn.utils.validation import check_is_fitted

    name = next(n for n, _ in ALL_ENCODERS if get_tags(n).input_kind == "structured")
    with pytest.raises(sklearn.exceptions.NotFittedError):
        check_is_fitted(make_encoder(name))
    check_is_fitted(hashplug.load_encoder(fitted_lsh_path))


@pytest.fixture
def fitted_lsh_path(digits, tmp_path) -> Path:
    return make_encoder("lsh").fit(digits[0]).save(tmp_path / "lsh.npz")


#: scikit-learn's checks that do not apply to hashplug's encoders of vectors, and why. Each of these checks
#: matches scikit-learn's own wording of an error (or wants a conversion) where hashplug refuses the input in
#: its own words (docs/errors.md): the behaviour (a ValueError / TypeError naming the problem) is the same.
SKLEARN_WORDING: dict[str, str] = {
    "check_complex_data": "complex X is refused as 'X must be real-valued; got dtype complex128', not in scikit-learn's "
                          "words 'Complex data not supported'",
    "check_dtype_object": "object arrays are refused ('X must be numeric; got dtype object'), never converted: a typed "
                          "contract",
    "check_fit2d_predict1d": "a 1-D X is refused with 'Reshape a single sample with x.reshape(1, -1)', not "
                             "scikit-learn's 'Reshape your data'",
    "check_n_features_in_after_fitting": "a width mismatch is refused naming the per-sample shapes, not as 'X has 3 "
                                         "features, but ... is expecting 4 features as input'",
}
#: Encoders tagged ``uses_labels`` take integer classes: scikit-learn's checks pass float targets.
SKLEARN_LABELS: dict[str, str] = {
    "check_estimators_nan_inf": "labels must be integer classes (uses_labels); the check fits with float targets",
}
# Image encoders (input_kind "images") declare three_d_array and not two_d_array in __sklearn_tags__ (they take
# images, or flat rows of their image_shape, not tables of any width), and structured ones dict inputs:
# scikit-learn then runs only its API checks on them (clone, repr, parameters, tags).


def _expected_failed_checks(estimator: Any) -> dict[str, str]:
    tags = get_tags(estimator)
    if tags.input_kind != "vectors":
        return {}
    return {**SKLEARN_WORDING, **(SKLEARN_LABELS if tags.uses_labels else {})}


@pytest.mark.parametrize("name", [n for n, _ in ALL_ENCODERS])
def test_sklearn_estimator_checks(name):
    """scikit-learn's own ``check_estimator`` on every registered encoder at its fast settings, k=2 (the checks'
    data have 1 to 10 features, and PCAHash / ITQ take k <= n_features). Listed exceptions must really fail."""
    from sklearn.utils.estimator_checks import check_estimator

    enc = make_encoder(name, k=2)
    expected = _expected_failed_checks(enc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = check_estimator(enc, expected_failed_checks=expected, on_fail=None)
    failed = {r["check_name"]: repr(r["exception"])[:300] for r in rows if r["status"] == "failed"}
    assert failed == {}
    assert {r["check_name"] for r in rows if r["status"] == "xfail"} == set(expected)  # the list is exact
    assert sum(r["status"] == "passed" for r in rows) >= 1


# ------------------------------------------------------------------------------------------ fast test settings
def test_fast_settings_are_declared_by_each_class_and_checked():
    assert all(isinstance(hashplug.encoders.ENCODERS[n]._test_params, type(hashplug.encoders.BioHash._test_params))
               for n, _ in ALL_ENCODERS)
    with pytest.raises(HashplugTypeError, match=r"_test_params sets \['bogus'\]"):

        class Bad(hashplug.encoders.BaseEncoder):
            _test_params = {"k": 2, "bogus": 1}

            def __init__(self, k: int = 4) -> None:
                self.k = k


# ------------------------------------------------------------------------------------------ the training loop
def test_every_trainer_runs_on_the_one_loop(digits, monkeypatch):
    from hashplug.train import loop

    calls: list[str] = []
    real = loop.run_epochs

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["desc"])
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "run_epochs", spy)
    X, y = digits
    for name in ("biohash", "mihash"):
        make_encoder(name).fit(X[:200], y[:200])
    from hashplug.train.digit_cnn import train_digit_cnn

    imgs = np.zeros((32, 28, 28), np.uint8)
    train_digit_cnn(imgs, np.arange(32) % 10, width=4, epochs=1, batch_size=16, device="cpu")
    from test_neurohash import scene_batch

    S, sy = scene_batch(60, 0)
    make_encoder("neurohash").fit(S, sy)
    assert calls == ["BioHash", "MIHash", "digit CNN", "NeuroHash HDC encoder", "NeuroHash hyperplanes L=8"]


def test_loop_records_means_stops_early_and_restores_threads():
    from hashplug.train.loop import EarlyStop, Step, permutation_batches, run_epochs

    before = torch.get_num_threads()
    values = iter([5.0, 4.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0])
    seen: list[int] = []

    def step(epoch: int, idx: np.ndarray) -> Step:
        seen.append(len(idx))
        return Step({"loss": next(values) * len(idx)}, weight=len(idx))

    stop = EarlyStop("loss", patience=2, mode="min")
    rng = np.random.default_rng(0)
    recs = run_epochs(step, permutation_batches(10, 10, rng), epochs=8, desc="t", threads=1, metrics=("loss",),
                      early_stop=stop)
    assert [r["loss"] for r in recs] == [5.0, 4.0, 6.0, 6.0] and stop.stopped_epoch == 3 and stop.best == 4.0
    assert torch.get_num_threads() == before
    # full minibatches only with drop_last; a fresh permutation per epoch
    assert [len(b) for b in permutation_batches(10, 4, rng, drop_last=True)(0)] == [4, 4]
    assert [len(b) for b in permutation_batches(10, 4, rng)(0)] == [4, 4, 2]
    with pytest.raises(HashplugError, match="monitors 'mi'"):
        EarlyStop("mi")(0, {"loss": 1.0})
    with pytest.raises(HashplugError, match="patience"):
        EarlyStop("mi", patience=0)


# ------------------------------------------------------------------------------------------ three modules
def test_contract_registry_and_persistence_modules_and_the_old_path():
    from hashplug.encoders import base, contract, persistence, registry

    assert base.BaseEncoder is contract.BaseEncoder is hashplug.encoders.BaseEncoder
    assert base.get_encoder is registry.get_encoder and base.load_encoder is persistence.load_encoder
    assert base.FILE_FORMAT == persistence.FILE_FORMAT and base.ENCODERS is registry.ENCODERS
    for name in base.__all__:
        assert getattr(base, name) is not None


def test_save_is_atomic_and_leaves_no_temporary_file(digits, tmp_path, monkeypatch):
    X = digits[0]
    path = make_encoder("lsh").fit(X).save(tmp_path / "m.npz")
    old = hashplug.load_encoder(path).weights_sha256()
    real = np.savez

    def disk_full(file: Any, **payload: Any) -> None:
        data = b"PK\x03\x04 half an archive"
        if hasattr(file, "write"):
            file.write(data)
        else:
            Path(file).write_bytes(data)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(ModelFileError, match="No space left"):
        make_encoder("lsh", random_state=1).fit(X).save(path)
    monkeypatch.setattr(np, "savez", real)
    assert hashplug.load_encoder(path).weights_sha256() == old  # the previous model, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]  # no temporary file left behind
    # the new file replaces the old one whole
    new = make_encoder("lsh", random_state=1).fit(X)
    new.save(path)
    assert hashplug.load_encoder(path).weights_sha256() == new.weights_sha256()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]
