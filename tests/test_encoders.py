"""The encoder contract, parametrized over every registered encoder (tests/_encoders.py)."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _encoders import ALL_ENCODERS, ENCODER_NAMES, FAST_PARAMS, make_encoder

import hashplug
from hashplug.codes import check_packed, convert, n_bytes, unpack_bits
from hashplug.encoders import BaseEncoder, BioHash, EncoderTags, Preset, get_preset, get_tags
from hashplug.validation import HashplugError, ModelFileError, NotFittedError

pytest.importorskip("torch")

IDS = ENCODER_NAMES  # encoders of arrays
ALL_IDS = [n for n, _ in ALL_ENCODERS]  # every registered encoder (tags, presets)
KHOT = [n for n in ENCODER_NAMES if hashplug.encoders.ENCODERS[n].code_kind == "khot"]
DENSE = [n for n in ENCODER_NAMES if hashplug.encoders.ENCODERS[n].code_kind == "dense"]
RANDOMISED = [n for n in ENCODER_NAMES if get_tags(n).randomized]


@pytest.fixture(scope="module")
def fitted(digits):
    """``fitted(name)``: an encoder fitted once per module on digits (do not mutate it)."""
    cache: dict[str, BaseEncoder] = {}

    def get(name: str) -> BaseEncoder:
        if name not in cache:
            cache[name] = make_encoder(name).fit(digits[0])
        return cache[name]

    return get


def test_every_registered_encoder_has_fast_params():
    # each class states its own fast settings (no list of names in the tests)
    assert [n for n in hashplug.available_encoders() if "_test_params" not in vars(hashplug.encoders.ENCODERS[n])] == []
    assert set(FAST_PARAMS) == set(hashplug.available_encoders())
    assert [n for n, _ in ALL_ENCODERS] == hashplug.available_encoders()
    assert set(KHOT) == {"biohash", "bioconvhash", "flyhash"}
    assert {"lsh", "pcahash", "itq", "sh", "naivebiohash"} <= set(DENSE)


# ------------------------------------------------------------------------------------------------
# tags and presets
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_IDS)
def test_tags_tell_the_truth_about_parameters(name):
    cls = hashplug.encoders.ENCODERS[name]
    tags = get_tags(cls)
    assert isinstance(tags, EncoderTags)
    assert tags == get_tags(name) == get_tags(cls()) == get_tags(tags.display_name)
    assert tags.code_kind == cls.code_kind
    params = set(cls._param_names())
    if tags.iterative:
        assert {"epochs", "verbose", "device"} <= params
    if tags.randomized:
        assert "random_state" in params
    assert hashplug.encoders.encoder_class(name) is hashplug.encoders.encoder_class(tags.display_name) is cls


def test_tags_of_the_builtin_encoders():
    tags = {n: get_tags(n) for n in ALL_IDS}
    assert {n for n, t in tags.items() if t.iterative} == {
        "biohash", "naivebiohash", "bioconvhash", "mihash", "dpsh", "angulardistill", "neurohash"
    }
    assert {n for n, t in tags.items() if t.uses_labels} == {"mihash", "dpsh", "neurohash"}
    assert {n for n, t in tags.items() if t.k_independent} == {"flyhash"}
    assert {n for n, t in tags.items() if t.paper_max_k is not None} == {"biohash", "bioconvhash"}
    assert {n for n, t in tags.items() if t.k_at_most_n_features} == {"pcahash", "itq", "angulardistill"}
    assert {n for n, t in tags.items() if t.randomized} == {
        "biohash", "naivebiohash", "bioconvhash", "flyhash", "lsh", "itq", "mihash", "dpsh", "angulardistill", "neurohash"
    }
    assert tags["sh"].display_name == "SH" and tags["biohash"].display_name == "BioHash"
    assert len({t.display_name.lower() for t in tags.values()}) == len(tags)  # display names are unique
    assert {n for n, t in tags.items() if t.input_kind != "vectors"} == {"bioconvhash", "neurohash"}
    assert tags["bioconvhash"].input_kind == "images" and tags["neurohash"].input_kind == "structured"
    with pytest.raises(HashplugError, match="input_kind"):
        EncoderTags("X", input_kind="audio")
    with pytest.raises(TypeError, match="get_tags expects"):
        get_tags(object())


@pytest.mark.parametrize("name", ALL_IDS)
def test_presets_build_valid_encoders(name, digits):
    cls = hashplug.encoders.ENCODERS[name]
    for dataset, preset in cls.presets.items():
        assert isinstance(preset, Preset) and preset.source.strip(), (name, dataset)
        assert get_preset(name, dataset) is preset
        for k in (2, *preset.by_k):
            enc = hashplug.get_encoder(name, k=k, **preset.for_k(k))
            assert enc.get_params()["k"] == k
    assert get_preset(name, "no-such-dataset") is None


def test_biohash_presets_moved_from_the_table_bench():
    """The table bench's former DEFAULT_HP (and the activities: MNIST sec. 3.4's, CIFAR-10 Fig. 4's) live beside BioHash."""
    mnist, cifar = get_preset("biohash", "mnist"), get_preset("biohash", "cifar10")
    assert mnist.params["activity"] == 0.05 and cifar.params["activity"] == 0.00125
    assert mnist.for_k(2)["p"] == 1.5 and mnist.for_k(8)["p"] == 1.75
    assert mnist.as_dict()["by_k"] == {"2": {"p": 1.5}}
    assert "tune_mnist_p.json" in mnist.source and "tune_cifar10.json" in cifar.source
    with pytest.raises(TypeError):
        mnist.params["p"] = 3.0  # presets are read-only


def test_preset_naming_a_non_parameter_fails_at_class_creation():
    with pytest.raises(TypeError, match=r"presets\['mnist'\] sets \['bogus'\]"):

        class Bad(BaseEncoder):
            presets = {"mnist": Preset({"bogus": 1}, source="test")}

            def __init__(self, k: int = 4) -> None:
                self.k = k


# ------------------------------------------------------------------------------------------------
# fit contract
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", IDS)
def test_init_stores_params_and_fit_returns_self_with_trailing_underscore_attrs(name, digits):
    X, _ = digits
    enc = make_encoder(name)
    params = enc.get_params()
    assert set(params) == set(inspect.signature(type(enc).__init__).parameters) - {"self"}
    # __init__ only stores the parameters, k and m included, as plain attributes
    assert vars(enc) == params

    before = set(vars(enc))
    assert enc.fit(X) is enc
    learned = set(vars(enc)) - before
    assert learned, "fit learned nothing"
    bad = [a for a in learned if not a.endswith("_") or a.startswith("_")]
    assert not bad, f"learned attributes must end in '_': {bad}"
    assert {"m_", "k_", "n_features_in_", "input_shape_", *type(enc)._array_attrs} <= learned
    assert enc.get_params() == params, "fit must not change the parameters"


@pytest.mark.parametrize("name", IDS)
def test_sizes(name, fitted):
    enc = fitted(name)
    assert enc.n_features_in_ == 64
    assert enc.input_shape_ == (64,)
    assert isinstance(enc.m_, int) and isinstance(enc.k_, int)
    assert enc.k == enc.k_ == FAST_PARAMS[name]["k"]  # the parameter is as given; k_ is what was fitted
    assert enc.n_bytes == n_bytes(enc.m_)
    if enc.code_kind == "khot":
        assert 1 <= enc.k_ < enc.m_
    else:
        assert enc.k_ == enc.m_
    expected_m = FAST_PARAMS[name].get("m") or {"flyhash": 2 * 64}.get(name, FAST_PARAMS[name].get("k"))
    assert enc.m_ == expected_m
    graph = enc.graph
    assert graph.code_kind == enc.code_kind and graph.k == enc.k_ and graph.m == enc.m_
    assert graph.inputs == {"x": (64,)}


def test_biohash_m_from_activity(digits):
    enc = BioHash(k=8, activity=0.05, epochs=1, device="cpu", random_state=0)
    assert enc.m is None and enc.k == 8  # before fit: the parameters
    enc.fit(digits[0])
    assert enc.m_ == 160 and enc.k_ == 8 and enc.W_.shape == (160, 64)
    assert enc.m is None and enc.get_params()["m"] is None  # the parameter itself is untouched
    assert enc.row_norms_.shape == (160,) and enc.row_norms_.dtype == np.float32


@pytest.mark.parametrize("name", ["biohash", "naivebiohash"])
def test_plasticity_encoders_store_float32_weights(name, fitted):
    enc = fitted(name)
    assert enc.W_.dtype == np.float32 and enc.W_.shape == (enc.m_, 64)
    assert enc.mean_.dtype == np.float32 and enc.mean_.shape == (64,)


# ------------------------------------------------------------------------------------------------
# encode
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", IDS)
def test_encode_formats(name, fitted, digits):
    X = digits[0][:300]
    enc = fitted(name)
    packed = enc.encode(X)
    assert packed.dtype == np.uint8 and packed.shape == (300, n_bytes(enc.m_))
    check_packed(packed, enc.m_)  # padding bits are zero
    np.testing.assert_array_equal(enc.encode(X, layout="packed"), packed)
    pm1 = enc.encode(X, layout="pm1")
    assert pm1.dtype == np.int8 and pm1.shape == (300, enc.m_)
    assert set(np.unique(pm1).tolist()) <= {-1, 1}
    np.testing.assert_array_equal(convert(packed, "packed", "pm1", enc.m_), pm1)
    if enc.code_kind == "khot":
        idx = enc.encode(X, layout="indices")
        assert idx.dtype == np.int32 and idx.shape == (300, enc.k_)
        assert (np.diff(idx, axis=1) > 0).all() and idx.min() >= 0 and idx.max() < enc.m_
        np.testing.assert_array_equal(convert(idx, "indices", "packed", enc.m_), packed)
    else:
        with pytest.raises(
            HashplugError,
            match=re.escape(
                f"{type(enc).__name__} produces dense codes; layout='indices' is only for k-hot encoders. "
                "Use layout='packed' or 'pm1'."
            ),
        ):
            enc.encode(X, layout="indices")
    with pytest.raises(
        HashplugError, match=r"Unknown code layout 'bits'; use one of \['packed', 'indices', 'pm1'\]"
    ):
        enc.encode(X, layout="bits")


@pytest.mark.parametrize("name", IDS)
def test_codes_are_the_graph_head_applied_to_scores(name, fitted, digits):
    X = digits[0][:200]
    enc = fitted(name)
    scores = enc.scores(X)
    assert scores.dtype == np.float32 and scores.shape == (200, enc.m_)
    np.testing.assert_array_equal(enc.graph.numpy(x=X), scores)
    bits = enc.graph.head.bits(scores)
    np.testing.assert_array_equal(unpack_bits(enc.encode(X), enc.m_), bits)


@pytest.mark.parametrize("name", KHOT)
def test_khot_rows_have_exactly_k_bits(name, fitted, digits):
    X = digits[0]
    enc = fitted(name)
    bits = unpack_bits(enc.encode(X), enc.m_)
    assert (bits.sum(axis=1) == enc.k_).all()
    # FlyHash's 0/1 weights on 0..16 pixels give many exact ties; the count still holds
    scores = enc.scores(X)
    kth = -np.sort(-scores, axis=1)[:, enc.k_ - 1]
    if name == "flyhash":
        assert ((scores == kth[:, None]).sum(axis=1) > 1).mean() > 0.5, "expected ties at the k-th place"


@pytest.mark.parametrize("name", KHOT)
def test_all_tied_scores_pick_the_lowest_units(name, fitted):
    enc = fitted(name)  # neither centres its input: a zero input scores 0 on every unit
    assert not enc.get_params().get("center", False)
    idx = enc.encode(np.zeros((3, 64), np.float32), layout="indices")
    np.testing.assert_array_equal(idx, np.tile(np.arange(enc.k_), (3, 1)))


@pytest.mark.parametrize("name", IDS)
def test_encode_is_batch_and_dtype_invariant(name, fitted, digits):
    X = digits[0][:257]
    enc = fitted(name)
    ref = enc.encode(X)
    np.testing.assert_array_equal(enc.encode(X, batch_size=10), ref)
    np.testing.assert_array_equal(enc.encode(X.astype(np.float64)), ref)
    np.testing.assert_array_equal(enc.encode(X[:1]), ref[:1])
    np.testing.assert_array_equal(enc.encode(X.tolist()), ref)


@pytest.mark.parametrize("name", IDS)
def test_fit_on_images_keeps_input_shape(name, digits):
    X = digits[0]
    enc = make_encoder(name).fit(X.reshape(-1, 8, 8))
    assert enc.input_shape_ == (8, 8) and enc.n_features_in_ == 64
    ref = enc.encode(X[:50].reshape(-1, 8, 8))
    np.testing.assert_array_equal(enc.encode(X[:50]), ref)  # flattened rows are accepted
    np.testing.assert_array_equal(ref, make_encoder(name).fit(X).encode(X[:50]))
    with pytest.raises(
        HashplugError, match=re.escape("per-sample shape (4, 16), but the model expects (8, 8)")
    ):
        enc.encode(X[:5].reshape(-1, 4, 16))


@pytest.mark.parametrize("name", IDS)
def test_fit_encode(name, digits):
    X = digits[0]
    np.testing.assert_array_equal(make_encoder(name).fit_encode(X), make_encoder(name).fit(X).encode(X))


# ------------------------------------------------------------------------------------------------
# determinism
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", IDS)
def test_same_random_state_same_model(name, digits):
    X = digits[0]
    a = make_encoder(name, random_state=3).fit(X)
    b = make_encoder(name, random_state=3).fit(X)
    for attr in type(a)._array_attrs:
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
    assert a.weights_sha256() == b.weights_sha256()
    np.testing.assert_array_equal(a.encode(X), b.encode(X))


@pytest.mark.parametrize("name", RANDOMISED)
def test_other_random_state_other_model(name, digits):
    X = digits[0]
    a = make_encoder(name, random_state=3).fit(X)
    b = make_encoder(name, random_state=4).fit(X)
    assert a.weights_sha256() != b.weights_sha256()
    assert not np.array_equal(a.encode(X), b.encode(X))


# ------------------------------------------------------------------------------------------------
# save / load
# ------------------------------------------------------------------------------------------------


def _read(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write(path: Path, files: dict[str, np.ndarray], header: dict | None = None) -> Path:
    files = dict(files)
    if header is not None:
        files["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **files)
    return path


def _header(files: dict[str, np.ndarray]) -> dict[str, Any]:
    return json.loads(files["__header__"].tobytes().decode())


@pytest.mark.parametrize("name", IDS)
def test_save_load_roundtrip(name, fitted, digits, tmp_path):
    X = digits[0][:300]
    enc = fitted(name)
    path = enc.save(tmp_path / "model")
    assert path == tmp_path / "model.npz" and path.is_file()
    for loaded in (hashplug.load_encoder(path), type(enc).load(path), BaseEncoder.load(path)):
        assert type(loaded) is type(enc)
        assert loaded.get_params() == enc.get_params()
        assert (loaded.m_, loaded.k_, loaded.n_features_in_, loaded.input_shape_) == (
            enc.m_,
            enc.k_,
            enc.n_features_in_,
            enc.input_shape_,
        )
        assert loaded.weights_sha256() == enc.weights_sha256()
        for attr in type(enc)._array_attrs:
            a, b = getattr(loaded, attr), getattr(enc, attr)
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        formats = ["packed", "pm1"] + (["indices"] if enc.code_kind == "khot" else [])
        for fmt in formats:
            np.testing.assert_array_equal(loaded.encode(X, format=fmt), enc.encode(X, format=fmt))
    header = _header(_read(path))
    assert header["format"] == "hashplug-encoder/1" and header["method"] == name
    assert header["sha256"] == enc.weights_sha256()


def test_save_paths(fitted, tmp_path):
    enc = fitted("lsh")
    assert enc.save(tmp_path / "a.npz") == tmp_path / "a.npz"
    assert enc.save(tmp_path / "b.bin") == tmp_path / "b.bin.npz"
    nested = enc.save(tmp_path / "x" / "y" / "c")
    assert nested == tmp_path / "x" / "y" / "c.npz" and nested.is_file()


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in IDS
    ],
)
def test_load_restores_every_learned_attribute(name, fitted, tmp_path):
    enc = fitted(name)
    loaded = hashplug.load_encoder(enc.save(tmp_path / "m.npz"))
    learned = {a for a in vars(enc) if a.endswith("_") and not a.startswith("_")}
    missing = sorted(a for a in learned if not hasattr(loaded, a))
    assert not missing, f"attributes lost by save/load: {missing}"
    for a in learned:
        np.testing.assert_array_equal(np.asarray(getattr(loaded, a)), np.asarray(getattr(enc, a)))


def _flip_bytes(path: Path, enc: BaseEncoder) -> None:
    """Flip a byte inside the raw data of the largest learned array."""
    raw = path.read_bytes()
    arr = max((np.asarray(getattr(enc, a)) for a in type(enc)._array_attrs), key=lambda a: a.nbytes)
    data = arr.tobytes(order="A")  # np.save writes Fortran-ordered arrays in Fortran order
    at = raw.find(data)
    assert at >= 0
    buf = bytearray(raw)
    buf[at + len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(buf))


def _tamper_array(path: Path, enc: BaseEncoder) -> None:
    files = _read(path)
    key = "a__W_"
    W = files[key].copy()
    W.flat[W.size // 2] += np.asarray(1, dtype=W.dtype)
    files[key] = W
    _write(path, files)


def _retype_array(path: Path, enc: BaseEncoder) -> None:
    files = _read(path)
    files["a__W_"] = files["a__W_"].astype(np.float64)  # same values, other dtype
    _write(path, files)


CORRUPTIONS: dict[str, tuple[Any, str]] = {
    "truncated": (
        lambda p, e: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        "is not a valid hashplug model file",
    ),
    "flipped-bytes": (_flip_bytes, "is not a valid hashplug model file"),
    "tampered-array": (
        _tamper_array,
        r"is corrupt: weights sha256 [0-9a-f]{12}\.\.\. != recorded [0-9a-f]{12}\.\.\.",
    ),
    "retyped-array": (_retype_array, r"is corrupt: weights sha256"),
    "not-npz": (lambda p, e: p.write_text("hello, I am not a model"), "is not a valid hashplug model file"),
    "empty-file": (lambda p, e: p.write_bytes(b""), "is not a valid hashplug model file"),
    "no-header": (
        lambda p, e: _write(p, {k: v for k, v in _read(p).items() if k != "__header__"}),
        "has no hashplug header; it was not written by Encoder.save()",
    ),
    "garbage-header": (
        lambda p, e: _write(p, {**_read(p), "__header__": np.frombuffer(b"\xff\xfe{not json", np.uint8)}),
        "has a corrupt header",
    ),
    "wrong-format": (
        lambda p, e: _write(p, _read(p), {**_header(_read(p)), "format": "hashplug-encoder/999"}),
        re.escape("has format 'hashplug-encoder/999'; expected 'hashplug-encoder/1'."),
    ),
    "unknown-method": (
        lambda p, e: _write(p, _read(p), {**_header(_read(p)), "method": "nope"}),
        r"holds unknown method 'nope'; known: \[",
    ),
    "missing-array": (
        lambda p, e: _write(p, {k: v for k, v in _read(p).items() if k != "a__W_"}),
        r"lacks arrays \['W_'\] needed by",
    ),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
@pytest.mark.parametrize("name", IDS)
def test_load_corrupted_file_raises_model_file_error(name, kind, fitted, tmp_path):
    enc = fitted(name)
    path = enc.save(tmp_path / "model.npz")
    corrupt, message = CORRUPTIONS[kind]
    corrupt(path, enc)
    with pytest.raises(ModelFileError, match=message):
        hashplug.load_encoder(path)


def test_load_missing_file_and_wrong_class(fitted, tmp_path):
    with pytest.raises(ModelFileError, match=r"No model file at '.*nothing\.npz'"):
        hashplug.load_encoder(tmp_path / "nothing.npz")
    path = fitted("biohash").save(tmp_path / "bio.npz")
    with pytest.raises(ModelFileError, match=r"holds a BioHash, not a LSH\."):
        hashplug.encoders.LSH.load(path)


def _header_edit(edit):
    def corrupt(path: Path) -> None:
        files = _read(path)
        header = _header(files)
        edit(header)
        _write(path, files, header)

    return corrupt


HEADER_EDITS = {
    "no-params": lambda h: h.pop("params"),
    "no-attrs": lambda h: h.pop("attrs"),
    "unknown-param": lambda h: h["params"].update(bogus=1),
    "wrong-n_features": lambda h: h["attrs"].update(n_features_in_=7, input_shape_=[7]),
    "k-greater-than-m": lambda h: h["attrs"].update(k_=h["attrs"]["m_"] + 1),
}


@pytest.mark.parametrize("edit", list(HEADER_EDITS))
def test_load_malformed_header_fields_raise_model_file_error(edit, fitted, tmp_path):
    path = fitted("flyhash").save(tmp_path / "model.npz")
    _header_edit(HEADER_EDITS[edit])(path)
    with pytest.raises(ModelFileError):
        hashplug.load_encoder(path)


# ------------------------------------------------------------------------------------------------
# input errors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", IDS)
def test_use_before_fit_raises_not_fitted(name, digits, tmp_path):
    enc = make_encoder(name)
    cls = type(enc).__name__
    msg = rf"^This {cls} instance is not fitted yet \(missing \[.*\]\); call fit\(X\) first\.$"
    for call in (
        lambda: enc.encode(digits[0]),
        lambda: enc.save(tmp_path / "m.npz"),
        lambda: enc.graph,
        lambda: enc.weights_sha256(),
    ):
        with pytest.raises(NotFittedError, match=msg) as info:
            call()
        assert isinstance(info.value, HashplugError)
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("name", ["biohash", "lsh"])
def test_scores_before_fit_raises_not_fitted(name, digits):
    with pytest.raises(NotFittedError, match="is not fitted yet"):
        make_encoder(name).scores(digits[0])


@pytest.mark.parametrize("name", IDS)
def test_bad_inputs_at_encode(name, fitted, digits):
    X = digits[0][:20].copy()
    enc = fitted(name)
    who = f"{type(enc).__name__}: X"
    with pytest.raises(
        HashplugError,
        match=re.escape(
            f"{who} has per-sample shape (63,), but the model expects (64,) (or 64 flattened features)."
        ),
    ):
        enc.encode(X[:, :63])
    for bad, where in ((np.nan, "(2, 5)"), (np.inf, "(2, 5)"), (-np.inf, "(2, 5)")):
        Xb = X.copy()
        Xb[2, 5] = bad
        with pytest.raises(
            HashplugError, match=re.escape(f"{who} contains NaN or infinity (first at index {where})")
        ):
            enc.encode(Xb)
    with pytest.raises(
        HashplugError, match=re.escape(f"{who} is an empty batch (shape (0, 64)); pass at least one row.")
    ):
        enc.encode(X[:0])
    with pytest.raises(
        HashplugError, match=re.escape(f"{who} must have 2 or 3 or 4 dimensions; got shape (64,). Reshape")
    ):
        enc.encode(X[0])
    with pytest.raises(HashplugError, match=re.escape(f"{who} must be numeric; got dtype <U1")):
        enc.encode(np.full((2, 64), "a"))
    with pytest.raises(HashplugError, match=re.escape(f"{who} is None")):
        enc.encode(None)


@pytest.mark.parametrize("name", IDS)
def test_bad_inputs_at_fit(name, digits):
    X, y = digits
    Xb = X.copy()
    Xb[7, 0] = np.nan
    cls = type(make_encoder(name)).__name__
    with pytest.raises(
        HashplugError, match=re.escape(f"{cls}: X contains NaN or infinity (first at index (7, 0))")
    ):
        make_encoder(name).fit(Xb)
    with pytest.raises(HashplugError, match=re.escape(f"{cls}: X is an empty batch")):
        make_encoder(name).fit(X[:0])
    with pytest.raises(HashplugError, match=re.escape("y has 3 rows but X has 1797; they must match.")):
        make_encoder(name).fit(X, y[:3])


@pytest.mark.parametrize("name", ["lsh", "biohash"])
def test_failed_refit_keeps_previous_model(name, digits):
    X = digits[0]
    enc = make_encoder(name).fit(X)
    ref = enc.encode(X[:20])
    with pytest.raises(HashplugError, match="'k' parameter"):
        enc.set_params(k=0).fit(X[:, :10])
    np.testing.assert_array_equal(enc.encode(X[:20]), ref)



def test_encode_rejects_bad_batch_size(fitted, digits):
    with pytest.raises(HashplugError, match="batch_size"):
        fitted("lsh").encode(digits[0][:5], batch_size=0)


# ------------------------------------------------------------------------------------------------
# parameter validation
# ------------------------------------------------------------------------------------------------


def _msg(param: str, cls: str, kind: str, rng: str, got: str) -> str:
    return f"The '{param}' parameter of {cls} must be {kind} in {rng}. Got {got} instead."


PARAM_ERRORS = [
    ("biohash", {"k": 0}, _msg("k", "BioHash", "an int", "[1, m=40]", "0")),
    ("biohash", {"k": 41}, _msg("k", "BioHash", "an int", "[1, m=40]", "41")),
    ("biohash", {"k": 2.5}, _msg("k", "BioHash", "an int", "[1, m=40]", "2.5")),
    ("biohash", {"k": True}, _msg("k", "BioHash", "an int", "[1, m=40]", "True")),
    ("biohash", {"k": 0, "m": None}, _msg("k", "BioHash", "an int", "[1, inf]", "0")),
    ("biohash", {"m": 0}, _msg("m", "BioHash", "an int", "[1, inf]", "0")),
    ("biohash", {"m": None, "activity": 0}, _msg("activity", "BioHash", "a float", "(0.0, 1.0]", "0.0")),
    ("biohash", {"m": None, "activity": 1.5}, _msg("activity", "BioHash", "a float", "(0.0, 1.0]", "1.5")),
    ("biohash", {"delta": -0.1}, _msg("delta", "BioHash", "a float", "[0.0, inf]", "-0.1")),
    ("biohash", {"p": 0.5}, _msg("p", "BioHash", "a float", "[1.0, inf]", "0.5")),
    ("biohash", {"p": float("nan")}, _msg("p", "BioHash", "a float", "[1.0, inf]", "nan")),
    ("biohash", {"p": "2"}, _msg("p", "BioHash", "a float", "[1.0, inf]", "'2'")),
    ("biohash", {"r": 1}, _msg("r", "BioHash", "an int", "[2, 40]", "1")),
    ("biohash", {"r": 41}, _msg("r", "BioHash", "an int", "[2, 40]", "41")),
    ("biohash", {"epochs": 0}, _msg("epochs", "BioHash", "an int", "[1, inf]", "0")),
    ("biohash", {"batch_size": 0}, _msg("batch_size", "BioHash", "an int", "[1, inf]", "0")),
    ("biohash", {"lr": 0}, _msg("lr", "BioHash", "a float", "(0.0, inf]", "0.0")),
    ("biohash", {"init_scale": -1.0}, _msg("init_scale", "BioHash", "a float", "(0.0, inf]", "-1.0")),
    ("biohash", {"random_state": -1}, _msg("random_state", "BioHash", "an int", "[0, inf]", "-1")),
    ("naivebiohash", {"k": 0}, _msg("k", "NaiveBioHash", "an int", "[1, inf]", "0")),
    ("naivebiohash", {"r": 9}, _msg("r", "NaiveBioHash", "an int", "[2, 8]", "9")),
    ("naivebiohash", {"p": 0.0}, _msg("p", "NaiveBioHash", "a float", "[1.0, inf]", "0.0")),
    ("naivebiohash", {"k": 1, "delta": 0.1}, "NaiveBioHash with k=1 has no rank-r unit; set delta=0."),
    ("flyhash", {"k": 0}, _msg("k", "FlyHash", "an int", "[1, m=128]", "0")),
    ("flyhash", {"k": 129}, _msg("k", "FlyHash", "an int", "[1, m=128]", "129")),
    ("flyhash", {"expansion": 0}, _msg("expansion", "FlyHash", "an int", "[1, inf]", "0")),
    ("flyhash", {"sampling": 0}, _msg("sampling", "FlyHash", "a float", "(0.0, 1.0]", "0.0")),
    ("flyhash", {"sampling": 1.5}, _msg("sampling", "FlyHash", "a float", "(0.0, 1.0]", "1.5")),
    ("lsh", {"k": 0}, _msg("k", "LSH", "an int", "[1, inf]", "0")),
    ("lsh", {"random_state": -1}, _msg("random_state", "LSH", "an int", "[0, inf]", "-1")),
    ("pcahash", {"k": 65}, _msg("k", "PCAHash", "an int", "[1, n_features=64]", "65")),
    ("pcahash", {"k": 0}, _msg("k", "PCAHash", "an int", "[1, n_features=64]", "0")),
    ("itq", {"k": 65}, _msg("k", "ITQ", "an int", "[1, n_features=64]", "65")),
    ("itq", {"n_iter": -1}, _msg("n_iter", "ITQ", "an int", "[0, inf]", "-1")),
    ("sh", {"k": 0}, _msg("k", "SpectralHash", "an int", "[1, inf]", "0")),
]


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    PARAM_ERRORS,
    ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for n, o, _ in PARAM_ERRORS],
)
def test_parameter_validation_messages(name, overrides, message, digits):
    enc = make_encoder(name, **overrides)  # __init__ never validates
    with pytest.raises(HashplugError, match="^" + re.escape(message) + "$"):
        enc.fit(digits[0])


@pytest.mark.parametrize("name", IDS)
def test_k_zero_is_rejected_by_every_encoder(name, digits):
    enc = make_encoder(name, k=0)
    with pytest.raises(
        HashplugError,
        match=rf"^The 'k' parameter of {type(enc).__name__} must be an int in \[1, .*\]\. "
        r"Got 0 instead\.$",
    ):
        enc.fit(digits[0])


# ------------------------------------------------------------------------------------------------
# registry and parameters
# ------------------------------------------------------------------------------------------------


def test_get_encoder_unknown_name_lists_available():
    with pytest.raises(HashplugError, match=r"^Unknown encoder 'nope'\. Available encoders: ") as info:
        hashplug.get_encoder("nope")
    listed = str(info.value).split("Available encoders: ")[1].rstrip(".").split(", ")
    assert listed == hashplug.available_encoders()


def test_get_encoder_is_case_insensitive_and_passes_params():
    enc = hashplug.get_encoder("BioHash", k=8, delta=0.05)
    assert type(enc) is BioHash
    assert enc.get_params()["k"] == 8 and enc.get_params()["delta"] == 0.05
    assert type(hashplug.get_encoder("LSH")) is hashplug.encoders.LSH


@pytest.mark.parametrize("name", IDS)
def test_get_params_set_params(name, digits):
    enc = make_encoder(name)
    params = enc.get_params()
    for key, val in {**FAST_PARAMS[name], "random_state": 0}.items():
        assert params[key] == val
    assert enc.set_params(random_state=5) is enc
    assert enc.get_params()["random_state"] == 5
    assert repr(enc).startswith(f"{type(enc).__name__}(") and "random_state=5" in repr(enc)
    with pytest.raises(
        hashplug.HashplugTypeError, match=rf"^unknown parameter 'bogus' for {type(enc).__name__}\. Valid parameters: k"
    ):
        enc.set_params(bogus=1)
    with pytest.raises(TypeError, match=r"Did you mean 'random_state'\?"):
        hashplug.get_encoder(name, random_stat=1)
    # a clone from get_params fits to the same model
    X = digits[0]
    enc.fit(X)
    clone = type(enc)(**enc.get_params()).fit(X)
    np.testing.assert_array_equal(clone.encode(X), enc.encode(X))


def test_set_params_k_refits_to_new_size(digits):
    X = digits[0]
    enc = make_encoder("lsh").fit(X)
    assert enc.k == enc.k_ == 8
    enc.set_params(k=16)
    assert enc.get_params()["k"] == 16
    fitted = enc.fit(X)
    assert fitted.k == fitted.k_ == 16 and enc.encode(X[:3]).shape == (3, 2)


@pytest.mark.parametrize("name", IDS)
def test_set_params_k_after_fit_is_not_stale(name, digits):
    """Regression (0.1.0's size descriptor): after ``set_params(k=...)`` on a fitted encoder, ``k`` is the new
    parameter at once; ``k_`` (and the codes) stay the fitted ones until the next fit."""
    X = digits[0]
    enc = make_encoder(name).fit(X)
    k0, m0 = enc.k_, enc.m_
    new_k = 2 if k0 != 2 else 3
    enc.set_params(k=new_k)
    assert enc.k == new_k and enc.get_params()["k"] == new_k
    assert (enc.k_, enc.m_, enc.graph.k) == (k0, m0, k0)
    assert enc.encode(X[:3]).shape == (3, n_bytes(m0))
    enc.fit(X)
    assert enc.k == enc.k_ == new_k


# ------------------------------------------------------------------------------------------------
# quality floor on real data
# ------------------------------------------------------------------------------------------------

# mAP@All (%) measured on this split (per_class_split(y, 20, seed=0), random_state=0) when written:
#   k=8:  BioHash 76.5, FlyHash 43.4, LSH 26.7      k=16: BioHash 76.9, FlyHash 48.9, LSH 31.4
# (other split / model seeds: BioHash 74.8-77.6, FlyHash 42.5-52.2, LSH 25.4-33.6).
FLOORS = {
    8: {"biohash": 0.72, "flyhash": 0.38, "lsh": 0.21},
    16: {"biohash": 0.72, "flyhash": 0.43, "lsh": 0.25},
}


@pytest.mark.parametrize("k", [8, 16])
def test_biohash_beats_flyhash_and_lsh_on_digits(k, digits):
    from hashplug.data import per_class_split
    from hashplug.metrics import map_from_codes

    X, y = digits
    q_idx, db_idx = per_class_split(y, per_class=20, seed=0)
    assert len(q_idx) == 200 and len(db_idx) == len(y) - 200
    assert np.bincount(y[q_idx]).tolist() == [20] * 10
    Xq, yq, Xdb, ydb = X[q_idx], y[q_idx], X[db_idx], y[db_idx]
    encoders = {
        "biohash": BioHash(k=k, activity=0.05, epochs=60, lr=0.2, delta=0.05, random_state=0, device="cpu"),
        "flyhash": hashplug.get_encoder("flyhash", k=k, random_state=0),
        "lsh": hashplug.get_encoder("lsh", k=k, random_state=0),
    }
    maps = {}
    for name, enc in encoders.items():
        enc.fit(Xdb)  # unsupervised: the database only, no labels
        maps[name] = map_from_codes(enc.encode(Xq), enc.encode(Xdb), yq, ydb)
    summary = ", ".join(f"{n} {100 * v:.1f}" for n, v in maps.items())
    assert maps["biohash"] > maps["flyhash"] > maps["lsh"], summary
    assert maps["biohash"] - maps["flyhash"] > 0.15, summary
    for name, floor in FLOORS[k].items():
        assert maps[name] >= floor, f"{name} below its floor {floor}: {summary}"


# ------------------------------------------------------------------------------------------------
# plasticity encoders: initialisation and convergence facts
# ------------------------------------------------------------------------------------------------

PARAM_ERRORS_INIT = [
    ("biohash", {"init": "pca"}, "The 'init' parameter of BioHash must be one of ['normal', 'data']. Got 'pca' instead."),
    ("naivebiohash", {"init": None},
     "The 'init' parameter of NaiveBioHash must be one of ['normal', 'data']. Got None instead."),
]


@pytest.mark.parametrize(("name", "overrides", "message"), PARAM_ERRORS_INIT, ids=["biohash", "naivebiohash"])
def test_init_parameter_is_validated(name, overrides, message, digits):
    enc = make_encoder(name, **overrides)
    with pytest.raises(HashplugError, match="^" + re.escape(message) + "$"):
        enc.fit(digits[0])


def test_init_defaults_to_normal_and_presets_may_set_it():
    assert BioHash().init == "normal" and hashplug.encoders.NaiveBioHash().init == "normal"
    # MNIST keeps N(0, 1) rows (data rows lost 0.7 points at k = 2); CIFAR-10's preset chose data rows
    assert get_preset("biohash", "mnist").for_k(4).get("init", "normal") == "normal"
    assert get_preset("biohash", "cifar10").for_k(4)["init"] == "data"
    enc = hashplug.get_encoder("biohash", k=4, **get_preset("biohash", "cifar10").for_k(4))
    assert enc.get_params()["init"] == "data"
    # the explicit default gives the same model as before the parameter existed
    X = np.random.default_rng(0).random((300, 10)).astype(np.float32)
    kw = {"k": 4, "m": 20, "epochs": 2, "device": "cpu", "random_state": 1}
    np.testing.assert_array_equal(BioHash(**kw).fit(X).W_, BioHash(init="normal", **kw).fit(X).W_)


@pytest.mark.parametrize("center", [False, True])
def test_data_init_starts_from_unit_norm_training_samples(center, digits):
    """With a vanishing learning rate the rows stay where they started: centred (when ``center``) training
    samples chosen with ``random_state``, scaled to unit p-norm."""
    X = digits[0].astype(np.float32)
    p = 3.0
    enc = BioHash(k=4, m=30, p=p, epochs=1, lr=1e-12, center=center, init="data", random_state=7, device="cpu")
    enc.fit(X)
    Xc = X - X.mean(axis=0) if center else X
    idx = np.random.default_rng(7).choice(len(X), size=30, replace=False)
    start = Xc[idx] / ((np.abs(Xc[idx].astype(np.float64)) ** p).sum(axis=1) ** (1 / p))[:, None]
    np.testing.assert_allclose(enc.W_, start, atol=1e-5)
    np.testing.assert_allclose(enc.row_norms_, 1.0, atol=1e-5)
    other = BioHash(**{**enc.get_params(), "random_state": 8}).fit(X)
    assert not np.allclose(other.W_, enc.W_)


@pytest.mark.parametrize("name", ["biohash", "naivebiohash"])
def test_convergence_facts_are_recorded_and_saved(name, fitted, tmp_path):
    enc = fitted(name)
    dev = np.abs(enc.row_norms_.astype(np.float64) - 1)
    assert enc.row_norm_dev_max_ == pytest.approx(dev.max(), rel=1e-5)
    assert enc.row_norm_dev_median_ == pytest.approx(np.median(dev), rel=1e-5)
    assert 0 < enc.units_ever_won_ <= 1
    assert set(enc.convergence_) == {"row_norm_dev_max", "row_norm_dev_median", "units_ever_won"}
    path = enc.save(tmp_path / "m.npz")
    assert {"row_norm_dev_max_", "row_norm_dev_median_", "units_ever_won_"} <= set(_header(_read(path))["attrs"])
    loaded = hashplug.load_encoder(path)
    assert loaded.convergence_ == enc.convergence_
    assert loaded.get_params()["init"] == enc.get_params()["init"]


def test_models_saved_before_the_convergence_facts_still_load(digits):
    fx = Path(__file__).parent / "fixtures" / "v0_1_0" / "biohash_k4.npz"
    enc = hashplug.load_encoder(fx)
    assert enc.get_params()["init"] == "normal"  # absent from the file: the default
    assert enc.convergence_ == {} and not hasattr(enc, "units_ever_won_")
    X = np.load(fx.parent / "X.npy")
    np.testing.assert_array_equal(enc.encode(X), np.load(fx.parent / "codes_biohash_k4_packed.npy"))
