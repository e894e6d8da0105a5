"""The model card: the metadata every hashplug ONNX file carries, and its validation.

Serving side: numpy and the standard library only (no onnx, no torch). ``hashplug.export`` writes the
card into the ONNX ``metadata_props``; :class:`hashplug.runtime.OnnxEncoder` and the integrations read
it back with :meth:`ModelCard.from_metadata`, which checks every key and names the key and the file in
its error.

Keys (all values are strings, as ONNX ``metadata_props`` require):

``hashplug.format``
    File format version, :data:`FORMAT_VERSION`.
``hashplug.version``
    hashplug version that wrote the file.
``hashplug.method``
    Encoder registry name (``"biohash"``, ``"lsh"``, ...).
``hashplug.input_shape``
    JSON list of the per-sample input shape, e.g. ``[28, 28]`` or ``[64]``.
``hashplug.input_dtype``
    ``"float32"``: the dtype of the ONNX input ``x`` of shape (N, *input_shape).
``hashplug.m`` / ``hashplug.k``
    Hash units and active units (``k == m`` for dense codes).
``hashplug.code_kind``
    ``"dense"`` (bit i is ``score_i > 0``) or ``"khot"`` (the k largest scores).
``hashplug.bit_order``
    ``"packbits-big"``: unit ``i`` is bit ``7 - i % 8`` of byte ``i // 8`` (``np.packbits`` default).
``hashplug.tie_rule``
    ``"score>0"`` for dense codes (a score of exactly 0 is bit 0); ``"lower-index"`` for k-hot codes
    (among equal scores the lower unit index wins, as ONNX ``TopK`` orders them).
``hashplug.preprocessing``
    JSON list describing every graph node in order: ``op.describe()`` (the op's registered name, scalar
    parameters inline, ``<field>_shape`` of array parameters), e.g. ``[{"op": "flatten"}, {"op": "matmul",
    "weight_shape": [784, 64], "accumulate": "float32"}]``. Any op name in :data:`PREPROCESSING_OPS` is
    valid: the ops of :data:`hashplug.graph.OPS` (0.1.0 files use ``affine``, ``l2_normalize``, ``matmul``,
    ``sin``).
``hashplug.n_bytes``
    Bytes per packed code, ``ceil(m / 8)``.
``hashplug.inputs`` (only in files of encoders with several named inputs, e.g. NeuroHash)
    JSON list of ``{"name": str, "shape": [int, ...], "default": float or null}``, the ONNX inputs in order,
    each float32 of shape (N, *shape); an input with a default may be left out by callers (the runtime
    fills it with that value). ``input_shape`` is then the first input's shape. Files without the key have
    the single input ``x``. An entry may carry ``"domain"``: the values the input may hold
    (:mod:`hashplug._domains`: ``values``, ``range``, ``where`` a mask input outside which NaN is allowed,
    ``hint``), checked by :class:`~hashplug.runtime.OnnxEncoder` as by the encoder's own ``encode``.
``hashplug.work_bytes`` (optional; files written since issue 31)
    Bytes per input row onnxruntime may hold while running the graph, estimated from the graph's shapes
    (:meth:`hashplug.graph.Graph.work_bytes`). :class:`~hashplug.runtime.OnnxEncoder` sizes its runs by it
    (a BioConvHash image can need 10 MB: 8,192 rows in one run would need 80 GB). Absent: unknown.
``hashplug.weights_sha256``
    ``encoder.weights_sha256()``: sha256 over the learned arrays of the encoder that was exported (the
    same digest its ``.npz`` save file records), so a file can be traced back to its training run. The
    sha256 of the ONNX file's own bytes is computed at load time (``OnnxEncoder.file_sha256``).
``hashplug.digest`` (files written since issue 27)
    sha256 over every other ``hashplug.*`` key and the whole model but its metadata (graph, weights,
    opsets): :func:`hashplug._onnx_wire.model_digest`. Written last by the exporter; a file whose weights
    or card changed afterwards is refused by every reader. Files without it (0.1.0) load as "legacy".

A scaling applied to the raw input (``hashplug train --scale 255``) is the graph's first node, the op
``divide`` (``{"op": "divide", "divisor": 255.0}`` in ``preprocessing``; :attr:`ModelCard.input_divisor`):
the file takes raw inputs and serving needs no ``--scale``.
Graph outputs: ``packed`` (N, n_bytes) uint8 always; ``indices`` (N, k) int64 ascending for k-hot codes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .validation import ModelFileError

__all__ = [
    "FORMAT_VERSION",
    "PREFIX",
    "KEYS",
    "CODE_KINDS",
    "BIT_ORDER",
    "TIE_RULES",
    "INPUT_NAME",
    "OUTPUT_PACKED",
    "OUTPUT_INDICES",
    "BUILTIN_OPS",
    "PREPROCESSING_OPS",
    "accept_op",
    "ModelCard",
    "is_hashplug_metadata",
    "check_input_divisor",
    "refuse_double_scaling",
]

FORMAT_VERSION = "hashplug-onnx/1"
PREFIX = "hashplug."
# The names a card may use are data here, so reading a card never imports hashplug.graph (the serving side
# must not load it); tests/test_import_rules.py holds them equal to the graph's registries.
#: Code kinds and their tie rules: one per head of :data:`hashplug.graph.HEADS` (its ``tie_rule``).
TIE_RULES = {"dense": "score>0", "khot": "lower-index"}
CODE_KINDS = tuple(TIE_RULES)
BIT_ORDER = "packbits-big"
#: Names of hashplug's own graph ops (:data:`hashplug.graph.OPS`): the ``"op"`` of ``preprocessing`` entries.
BUILTIN_OPS = frozenset(
    {
        "add", "affine", "concat", "conv2d", "cos", "divide", "flatten", "l2_normalize", "matmul", "max_pool2d",
        "mul", "patch_l2_norm", "reduce_sum", "relu", "reshape", "safe_div", "sin", "topk_per_location",
    }
)
#: The op names a card's ``preprocessing`` may hold: :data:`BUILTIN_OPS` and every op class registered in this
#: process since (:class:`hashplug.graph.Op` subclasses announce their name with :func:`accept_op`).
PREPROCESSING_OPS: set[str] = set(BUILTIN_OPS)
INPUT_NAME = "x"
OUTPUT_PACKED = "packed"
OUTPUT_INDICES = "indices"

# field name -> metadata key
_FIELDS = {
    "format_version": "format",
    "hashplug_version": "version",
    "method": "method",
    "input_shape": "input_shape",
    "input_dtype": "input_dtype",
    "m": "m",
    "k": "k",
    "code_kind": "code_kind",
    "bit_order": "bit_order",
    "tie_rule": "tie_rule",
    "preprocessing": "preprocessing",
    "n_bytes": "n_bytes",
    "weights_sha256": "weights_sha256",
}
KEYS = tuple(PREFIX + v for v in _FIELDS.values())
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def accept_op(name: str) -> None:
    """Accept ``name`` as a preprocessing op of cards read in this process (called when an op registers)."""
    PREPROCESSING_OPS.add(str(name))


class GraphLike(Protocol):
    """What :meth:`ModelCard.from_graph` reads of a :class:`hashplug.graph.Graph`."""

    inputs: dict[str, tuple[int, ...]]
    input_shape: tuple[int, ...]
    m: int
    k: int
    code_kind: str

    def describe(self) -> list[dict[str, Any]]: ...


def check_input_divisor(value: Any, name: str = "--scale") -> float:
    """A scale (divisor) for raw inputs: a finite number > 0, else :class:`~hashplug.validation.HashplugError`
    naming ``name`` and the value (``--scale 0`` used to mean "no scaling" silently)."""
    import numbers

    from .validation import HashplugError

    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value <= 0:
        raise HashplugError(
            f"{name} must be a finite number > 0 (the value inputs are divided by, e.g. 255 for 8-bit pixels); "
            f"got {value!r}. Leave it out for no scaling."
        )
    return float(value)


def refuse_double_scaling(card: ModelCard, scale: Any, name: str = "--scale") -> None:
    """Refuse an extra scaling of the input for a model whose graph already divides its raw input."""
    from .validation import HashplugError

    if scale is not None and card.input_divisor is not None:
        where = f"{card.source!r}" if card.source else "the model"
        raise HashplugError(
            f"{name} {scale:g} would scale the input twice: {where} already divides its raw input by "
            f"{card.input_divisor:g} (recorded at training, preprocessing 'divide'). Pass raw inputs and leave out {name}."
        )


def is_hashplug_metadata(meta: dict[str, str]) -> bool:
    """Whether a metadata mapping carries any hashplug key."""
    return any(str(key).startswith(PREFIX) for key in meta)


@dataclass(frozen=True)
class ModelCard:
    """Validated hashplug metadata of one ONNX file.

    Attributes
    ----------
    method : str
        Encoder registry name.
    input_shape : tuple of int
        Per-sample input shape; the ONNX input is (N, *input_shape) float32.
    m, k : int
        Hash units and active units per code (``k == m`` for dense codes).
    code_kind : {"dense", "khot"}
    n_bytes : int
        ``ceil(m / 8)``.
    weights_sha256 : str
        sha256 (hex) of the exported encoder's learned arrays.
    preprocessing : list of dict
        :meth:`hashplug.graph.Graph.describe` of the encoder's graph.
    hashplug_version, format_version, input_dtype, bit_order, tie_rule : str
    work_bytes : int
        Bytes per input row a run of the graph may hold (0: unknown, files before issue 31).
    source : str or None
        File the card was read from (used in error messages; not written to metadata).
    """

    method: str
    input_shape: tuple[int, ...]
    m: int
    k: int
    code_kind: str
    weights_sha256: str
    preprocessing: list[dict[str, Any]] = field(default_factory=list)
    n_bytes: int = 0
    hashplug_version: str = ""
    format_version: str = FORMAT_VERSION
    input_dtype: str = "float32"
    bit_order: str = BIT_ORDER
    tie_rule: str = ""
    inputs: tuple[tuple[str, tuple[int, ...], float | None], ...] = ()
    input_domains: dict[str, dict[str, Any]] = field(default_factory=dict)
    work_bytes: int = 0
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.n_bytes:
            object.__setattr__(self, "n_bytes", (int(self.m) + 7) // 8)
        if not self.tie_rule and self.code_kind in TIE_RULES:
            object.__setattr__(self, "tie_rule", TIE_RULES[self.code_kind])
        if not self.hashplug_version:
            from ._version import __version__

            object.__setattr__(self, "hashplug_version", __version__)
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(
            self,
            "inputs",
            tuple((str(nm), tuple(int(v) for v in shp), None if d is None else float(d)) for nm, shp, d in self.inputs),
        )
        self.validate()

    # ------------------------------------------------------------------ derived
    @property
    def input_specs(self) -> tuple[tuple[str, tuple[int, ...], float | None], ...]:
        """``(name, per-sample shape, default or None)`` of every ONNX input, in order."""
        return self.inputs or ((INPUT_NAME, tuple(self.input_shape), None),)

    @property
    def input_divisor(self) -> float | None:
        """The divisor the graph applies to its raw input first (``hashplug train --scale``), or None."""
        if self.preprocessing and self.preprocessing[0].get("op") == "divide":
            return float(self.preprocessing[0]["divisor"])
        return None

    @property
    def multi_input(self) -> bool:
        """Whether the encoder takes several named inputs (a mapping) instead of one array ``x``."""
        return bool(self.inputs)

    @property
    def n_features(self) -> int:
        """Flattened input width ``prod(input_shape)``."""
        return int(np.prod(self.input_shape))

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of the ONNX graph outputs."""
        return (OUTPUT_PACKED, OUTPUT_INDICES) if self.code_kind == "khot" else (OUTPUT_PACKED,)

    # ------------------------------------------------------------------ validation
    def _fail(self, key: str, msg: str) -> ModelFileError:
        where = f"{self.source!r}" if self.source else "the model metadata"
        return ModelFileError(f"{where}: metadata key {PREFIX + key!r} {msg}")

    def validate(self) -> None:
        """Check every field and their consistency; raise :class:`ModelFileError` naming the key."""
        if self.format_version != FORMAT_VERSION:
            raise self._fail("format", f"is {self.format_version!r}; this hashplug reads {FORMAT_VERSION!r}.")
        if not isinstance(self.method, str) or not self.method:
            raise self._fail("method", "must be a non-empty string.")
        if not self.input_shape or any(s < 1 for s in self.input_shape):
            raise self._fail(
                "input_shape", f"must be a non-empty list of positive ints; got {list(self.input_shape)}."
            )
        if self.input_dtype != "float32":
            raise self._fail("input_dtype", f"must be 'float32'; got {self.input_dtype!r}.")
        if self.code_kind not in CODE_KINDS:
            raise self._fail("code_kind", f"is {self.code_kind!r}; known kinds are {list(CODE_KINDS)}.")
        if int(self.m) < 1:
            raise self._fail("m", f"must be >= 1; got {self.m}.")
        if not 1 <= int(self.k) <= int(self.m):
            raise self._fail("k", f"must be in [1, m={self.m}]; got {self.k}.")
        if self.code_kind == "dense" and int(self.k) != int(self.m):
            raise self._fail("k", f"must equal m={self.m} for dense codes; got {self.k}.")
        if int(self.n_bytes) != (int(self.m) + 7) // 8:
            raise self._fail(
                "n_bytes", f"is {self.n_bytes} but m={self.m} needs ceil(m/8)={(int(self.m) + 7) // 8}."
            )
        if self.bit_order != BIT_ORDER:
            raise self._fail("bit_order", f"is {self.bit_order!r}; expected {BIT_ORDER!r}.")
        if self.tie_rule != TIE_RULES[self.code_kind]:
            raise self._fail(
                "tie_rule", f"is {self.tie_rule!r}; {self.code_kind} codes use {TIE_RULES[self.code_kind]!r}."
            )
        if not isinstance(self.weights_sha256, str) or not _SHA_RE.match(self.weights_sha256):
            raise self._fail(
                "weights_sha256", f"must be 64 lowercase hex digits; got {self.weights_sha256!r}."
            )
        if isinstance(self.work_bytes, bool) or not isinstance(self.work_bytes, int) or self.work_bytes < 0:
            raise self._fail("work_bytes", f"must be an int >= 1 (bytes per input row) when present; got "
                                           f"{self.work_bytes!r}.")
        if self.inputs:
            names = [nm for nm, _, _ in self.inputs]
            if len(set(names)) != len(names) or any(not nm for nm in names):
                raise self._fail("inputs", f"must name distinct non-empty inputs; got {names}.")
            if any(not shp or min(shp) < 1 for _, shp, _ in self.inputs):
                raise self._fail("inputs", "must give every input a non-empty shape of positive ints.")
            if tuple(self.inputs[0][1]) != tuple(self.input_shape):
                raise self._fail("inputs", f"first input shape {list(self.inputs[0][1])} differs from input_shape {list(self.input_shape)}.")
        if self.input_domains:
            from ._domains import check_domain_spec

            shapes = {nm: shp for nm, shp, _ in self.input_specs}
            for nm, spec in self.input_domains.items():
                if nm not in shapes:
                    raise self._fail("inputs", f"declares a domain for {nm!r}, which is not an input.")
                try:
                    check_domain_spec(nm, spec, shapes)
                except ValueError as exc:
                    raise self._fail("inputs", f"has a malformed {exc}.") from None
        if not isinstance(self.preprocessing, list) or not all(
            isinstance(st, dict) and st.get("op") in PREPROCESSING_OPS for st in self.preprocessing
        ):
            raise self._fail(
                "preprocessing",
                f"must be a JSON list of graph nodes whose 'op' is one of {sorted(PREPROCESSING_OPS)}.",
            )

    # ------------------------------------------------------------------ (de)serialisation
    def to_metadata(self) -> dict[str, str]:
        """The card as ONNX ``metadata_props`` (str -> str), keys in :data:`KEYS`."""
        out: dict[str, str] = {}
        for name, key in _FIELDS.items():
            val = getattr(self, name)
            if name == "input_shape":
                s = json.dumps([int(v) for v in val])
            elif name == "preprocessing":
                s = json.dumps(val, sort_keys=True)
            else:
                s = str(val)
            out[PREFIX + key] = s
        if self.inputs:
            entries = []
            for nm, shp, d in self.inputs:
                entry: dict[str, Any] = {"name": nm, "shape": list(shp), "default": d}
                if nm in self.input_domains:
                    entry["domain"] = self.input_domains[nm]
                entries.append(entry)
            out[PREFIX + "inputs"] = json.dumps(entries, sort_keys=True)
        if self.work_bytes:
            out[PREFIX + "work_bytes"] = str(int(self.work_bytes))
        return out

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str | Path | None = None) -> ModelCard:
        """Parse and validate ONNX ``metadata_props``.

        Parameters
        ----------
        meta : dict of str to str
            E.g. ``session.get_modelmeta().custom_metadata_map``.
        source : str or Path or None
            The file the metadata came from, named in error messages.

        Raises
        ------
        ModelFileError
            The file is not a hashplug ONNX file, or a key is missing, malformed or inconsistent.
        """
        src = None if source is None else str(source)
        where = f"{src!r}" if src else "the model metadata"
        meta = dict(meta or {})
        if not is_hashplug_metadata(meta):
            raise ModelFileError(
                f"{where} is not a hashplug ONNX file: it has no '{PREFIX}*' metadata. "
                "Export encoders with hashplug.export.to_onnx(encoder, path)."
            )

        def get(key: str) -> str:
            full = PREFIX + key
            if full not in meta:
                raise ModelFileError(
                    f"{where}: metadata key {full!r} is missing; the file is corrupt or truncated."
                )
            return str(meta[full])

        def get_int(key: str) -> int:
            raw = get(key)
            try:
                return int(raw)
            except ValueError:
                raise ModelFileError(
                    f"{where}: metadata key {PREFIX + key!r} must be an integer; got {raw!r}."
                ) from None

        def get_json(key: str) -> Any:
            raw = get(key)
            try:
                return json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ModelFileError(
                    f"{where}: metadata key {PREFIX + key!r} is not valid JSON ({exc})."
                ) from None

        shape = get_json("input_shape")
        if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in shape
        ):
            raise ModelFileError(
                f"{where}: metadata key {PREFIX + 'input_shape'!r} must be a JSON list of ints; got {get('input_shape')!r}."
            )
        inputs: list[tuple[str, tuple[int, ...], float | None]] = []
        domains: dict[str, dict[str, Any]] = {}
        if PREFIX + "inputs" in meta:
            raw_inputs = get_json("inputs")
            try:
                for spec in raw_inputs:
                    shp = spec["shape"]
                    if not isinstance(shp, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in shp):
                        raise TypeError("shape")
                    d = spec.get("default")
                    if d is not None and not isinstance(d, (int, float)):
                        raise TypeError("default")
                    inputs.append((str(spec["name"]), tuple(shp), d))
                    if spec.get("domain") is not None:
                        if not isinstance(spec["domain"], dict):
                            raise TypeError("domain")
                        domains[str(spec["name"])] = spec["domain"]
            except (TypeError, KeyError, AttributeError) as exc:
                raise ModelFileError(
                    f"{where}: metadata key {PREFIX + 'inputs'!r} must be a JSON list of {{name, shape, default}} "
                    f"objects ({exc})."
                ) from None
        work = 0
        if PREFIX + "work_bytes" in meta:
            work = get_int("work_bytes")
            if work < 1:
                raise ModelFileError(f"{where}: metadata key {PREFIX + 'work_bytes'!r} must be >= 1; got {work}.")
        return cls(
            work_bytes=work,
            inputs=tuple(inputs),
            input_domains=domains,
            format_version=get("format"),
            hashplug_version=get("version") or "?",
            method=get("method"),
            input_shape=tuple(shape),
            input_dtype=get("input_dtype"),
            m=get_int("m"),
            k=get_int("k"),
            code_kind=get("code_kind"),
            bit_order=get("bit_order"),
            tie_rule=get("tie_rule"),
            preprocessing=get_json("preprocessing"),
            n_bytes=get_int("n_bytes") or -1,
            weights_sha256=get("weights_sha256"),
            source=src,
        )

    @classmethod
    def from_graph(
        cls,
        graph: GraphLike,
        *,
        method: str,
        weights_sha256: str,
        source: str | None = None,
        input_defaults: dict[str, float] | None = None,
        input_domains: dict[str, dict[str, Any]] | None = None,
    ) -> ModelCard:
        """Build the card of an encoder from its :class:`~hashplug.graph.Graph` (used by the exporter).

        A graph with several named inputs gets the ``inputs`` entry (``input_defaults`` names the inputs
        callers may leave out, with their fill value).
        """
        defaults = dict(input_defaults or {})
        multi = list(graph.inputs) != [INPUT_NAME]
        inputs = tuple((nm, shp, defaults.get(nm)) for nm, shp in graph.inputs.items()) if multi else ()
        return cls(
            inputs=inputs,
            input_domains={nm: dict(v) for nm, v in (input_domains or {}).items()} if multi else {},
            method=str(method),
            input_shape=next(iter(graph.inputs.values())) if multi else graph.input_shape,
            m=graph.m,
            k=graph.k,
            code_kind=graph.code_kind,
            weights_sha256=str(weights_sha256),
            preprocessing=graph.describe(),
            work_bytes=int(graph.work_bytes()) if hasattr(graph, "work_bytes") else 0,
            source=source,
        )
