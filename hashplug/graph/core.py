"""The :class:`Graph`: named inputs, a DAG of typed ops in topological order, and a head.

A graph maps its named float32 inputs ``{name: (n, *shape)}`` to scores and the head maps the scores
(n, m) to bits. The same graph is run by numpy (:meth:`Graph.numpy`, ``encoder.encode``), by torch
(:meth:`Graph.to_torch`, training side; parameters optionally trainable) and translated to ONNX by
``hashplug.export``, so the three cannot drift apart. Shapes are checked when the graph is built.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .heads import Head
from .ops import GraphError, Op, Shape

__all__ = ["DEFAULT_INPUT", "Node", "Graph"]

#: Input name of single-input graphs (the ONNX input of exported encoders).
DEFAULT_INPUT = "x"


@dataclass(frozen=True)
class Node:
    """One op application: ``output = op(*inputs)``.

    Attributes
    ----------
    op : Op
    inputs : tuple of str
        Names of graph inputs or earlier node outputs.
    output : str
        Name of the value this node defines (unique in the graph).
    """

    op: Op
    inputs: tuple[str, ...]
    output: str

    def __post_init__(self) -> None:
        ins = (self.inputs,) if isinstance(self.inputs, str) else tuple(self.inputs)
        object.__setattr__(self, "inputs", tuple(str(i) for i in ins))
        object.__setattr__(self, "output", str(self.output))


class Graph:
    """An encoder's inference: named inputs, typed op nodes (a DAG in topological order), a head.

    Parameters
    ----------
    inputs : mapping of str to tuple of int
        Per-sample shape of every named input (no batch axis), e.g. ``{"x": (1, 28, 28)}``.
    nodes : sequence of Node or (op, inputs, output) tuples
        In topological order: every node reads only inputs and earlier outputs.
    head : Head or None
        Maps the output scores (n, m) to bits; ``None`` for a graph computing values only (its output may
        have any shape).
    output : str or None
        Name of the scores; default the last node's output (or the only input of a graph without nodes).

    Raises
    ------
    GraphError
        Dangling or duplicate names, wrong input counts, shapes that do not fit an op (the message names
        the node), scores that are not (m,) per sample, or a head that does not fit m.
    """

    def __init__(
        self,
        inputs: Mapping[str, Sequence[int]],
        nodes: Sequence[Node | tuple[Op, Any, str]] = (),
        head: Head | None = None,
        output: str | None = None,
    ) -> None:
        self.inputs: dict[str, Shape] = {str(k): tuple(int(s) for s in v) for k, v in inputs.items()}
        self.nodes: tuple[Node, ...] = tuple(n if isinstance(n, Node) else Node(*n) for n in nodes)
        self.head = head
        if output is None:
            output = self.nodes[-1].output if self.nodes else (next(iter(self.inputs)) if self.inputs else "")
        self.output = str(output)
        self.shapes: dict[str, Shape] = self.check()

    @classmethod
    def chain(
        cls, ops: Iterable[Op], input_shape: Sequence[int], head: Head | None = None, input_name: str = DEFAULT_INPUT
    ) -> Graph:
        """A single-input graph applying ``ops`` one after the other (values named ``v0``, ``v1``, ...)."""
        nodes, prev = [], input_name
        for i, op in enumerate(ops):
            nodes.append(Node(op, (prev,), f"v{i}"))
            prev = f"v{i}"
        return cls({input_name: tuple(input_shape)}, nodes, head, output=prev)

    # ------------------------------------------------------------------ validation
    def check(self) -> dict[str, Shape]:
        """Validate names and shapes; return the per-sample shape of every value by name."""
        if not self.inputs:
            raise GraphError("a graph needs at least one named input.")
        shapes: dict[str, Shape] = {}
        for name, shape in self.inputs.items():
            if not shape or any(s < 1 for s in shape):
                raise GraphError(f"graph input {name!r} has shape {shape}; per-sample shapes are positive ints.")
            shapes[name] = shape
        for i, node in enumerate(self.nodes):
            op = node.op
            if not isinstance(op, Op):
                raise GraphError(f"graph node {i} holds {op!r}, which is not a hashplug.graph Op.")
            where = f"graph node {i} ({op.name or type(op).__name__})"
            if len(node.inputs) != op.n_inputs:
                raise GraphError(f"{where} takes {op.n_inputs} input(s); got {list(node.inputs)}.")
            missing = [n for n in node.inputs if n not in shapes]
            if missing:
                raise GraphError(f"{where} reads {missing}, defined by no input or earlier node.")
            if node.output in shapes:
                raise GraphError(f"{where} redefines the value {node.output!r}.")
            try:
                shapes[node.output] = tuple(int(s) for s in op.out_shape(*(shapes[n] for n in node.inputs)))
            except GraphError as exc:
                raise GraphError(f"{where}: {exc}") from None
        if self.output not in shapes:
            raise GraphError(f"the graph output {self.output!r} is not defined.")
        if self.head is not None:
            out = shapes[self.output]
            if len(out) != 1:
                raise GraphError(
                    f"the graph output {self.output!r} has per-sample shape {out}; a head needs scores (m,) "
                    "(end the graph with Flatten())."
                )
            self.head.check(out[0])
        return shapes

    # ------------------------------------------------------------------ properties
    @property
    def m(self) -> int:
        """Number of scores (units) per sample."""
        shape = self.shapes[self.output]
        if len(shape) != 1:
            raise GraphError(f"the graph output has per-sample shape {shape}, not (m,).")
        return int(shape[0])

    @property
    def k(self) -> int:
        """Active units per code (``m`` for dense heads)."""
        return self._head().k_for(self.m)

    @property
    def code_kind(self) -> str:
        """The head's code kind (``"dense"`` or ``"khot"``)."""
        return self._head().code_kind

    @property
    def input_shape(self) -> Shape:
        """Per-sample shape of the only input (single-input graphs)."""
        if len(self.inputs) != 1:
            raise GraphError(f"the graph has inputs {list(self.inputs)}; input_shape needs exactly one.")
        return next(iter(self.inputs.values()))

    def _head(self) -> Head:
        if self.head is None:
            raise GraphError("the graph has no head.")
        return self.head

    def work_bytes(self) -> int:
        """Bytes per sample a backend may hold while running the graph: the inputs, every op's
        :meth:`~hashplug.graph.Op.work_bytes` (as if all were alive at once: an upper-side estimate) and the
        head's scores; what sizes the rows of one onnxruntime run (the model card's ``work_bytes``)."""
        total = sum(4 * math.prod(s) for s in self.inputs.values())
        total += sum(node.op.work_bytes(*(self.shapes[v] for v in node.inputs)) for node in self.nodes)
        out = self.shapes[self.output]
        return int(total + 12 * math.prod(out))  # scores, and the head's indices

    def describe(self) -> list[dict[str, Any]]:
        """``op.describe()`` of every node, in order (the model card's ``preprocessing``)."""
        return [node.op.describe() for node in self.nodes]

    def arrays(self) -> dict[str, np.ndarray]:
        """Every op array, keyed ``"<node output>.<field>"``."""
        return {f"{node.output}.{key}": arr for node in self.nodes for key, arr in node.op.arrays().items()}

    def __repr__(self) -> str:
        lines = [f"Graph(inputs={self.inputs}, output={self.output!r}, head={self.head!r})"]
        lines += [f"  {n.output} {self.shapes[n.output]} = {n.op!r}({', '.join(n.inputs)})" for n in self.nodes]
        return "\n".join(lines)

    # ------------------------------------------------------------------ numpy
    def _feed(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        unknown = sorted(set(inputs) - set(self.inputs))
        missing = [n for n in self.inputs if n not in inputs]
        if unknown or missing:
            raise GraphError(f"the graph takes inputs {list(self.inputs)}; missing {missing}, unknown {unknown}.")
        vals, n = {}, None
        for name, shape in self.inputs.items():
            x = np.asarray(inputs[name], dtype=np.float32)
            if x.shape[1:] != shape or (n is not None and x.shape[0] != n):
                raise GraphError(f"input {name!r} has shape {x.shape}; expected (n, *{shape}) with one n for all.")
            n = x.shape[0]
            vals[name] = x
        return vals

    def numpy(self, **inputs: Any) -> np.ndarray:
        """Run the graph with numpy: inputs ``name=array (n, *shape)`` -> scores (n, *out_shape), float32."""
        vals = self._feed(inputs)
        for node, done in zip(self.nodes, self._freed_after()):
            vals[node.output] = node.op.numpy(*(vals[name] for name in node.inputs))
            for name in done:
                del vals[name]
        return vals[self.output]

    def _freed_after(self) -> list[tuple[str, ...]]:
        """Per node, the values no later node reads (its inputs read for the last time; never the output):
        what a run may free once the node has run."""
        last_use = {name: i for i, node in enumerate(self.nodes) for name in node.inputs}
        return [tuple(sorted(n for n in set(node.inputs) if last_use[n] == i and n != self.output))
                for i, node in enumerate(self.nodes)]

    def bits(self, **inputs: Any) -> np.ndarray:
        """``head.bits(numpy(**inputs))``: ndarray (n, m), dtype=bool."""
        return self._head().bits(self.numpy(**inputs))

    # ------------------------------------------------------------------ torch
    def to_torch(self, trainable: bool = False) -> Any:
        """A ``torch.nn.Module`` running the same ops (``forward(*inputs or **inputs) -> scores``).

        Parameters
        ----------
        trainable : bool
            Op arrays become ``nn.Parameter`` (else buffers). Write trained values back with the module's
            ``to_graph()``.
        """
        return _graph_module_class()(self, trainable)

    def with_input_op(self, op: Op) -> Graph:
        """The same graph with ``op`` applied to its only input first (e.g. :class:`~hashplug.graph.Divide`, the
        scaling of raw inputs): every node that read the input reads ``op``'s output instead."""
        if len(self.inputs) != 1:
            raise GraphError(f"with_input_op needs a single-input graph; this one has inputs {list(self.inputs)}.")
        src = next(iter(self.inputs))
        taken = set(self.shapes)
        new, i = f"{src}_{op.name}", 0
        while new in taken:
            i += 1
            new = f"{src}_{op.name}{i}"
        nodes = [Node(op, (src,), new)]
        nodes += [Node(n.op, tuple(new if v == src else v for v in n.inputs), n.output) for n in self.nodes]
        return Graph(self.inputs, nodes, self.head, new if self.output == src else self.output)

    def with_ops(self, ops: Sequence[Op]) -> Graph:
        """The same graph with node ``i`` running ``ops[i]`` (e.g. trained ops)."""
        if len(ops) != len(self.nodes):
            raise GraphError(f"with_ops needs {len(self.nodes)} ops; got {len(ops)}.")
        nodes = [Node(op, n.inputs, n.output) for op, n in zip(ops, self.nodes)]
        return Graph(self.inputs, nodes, self.head, self.output)


_GRAPH_MODULE: Any = None


def _graph_module_class() -> Any:
    """The torch module class of :meth:`Graph.to_torch` (defined on first use: no torch at import)."""
    global _GRAPH_MODULE
    if _GRAPH_MODULE is None:
        import torch

        class GraphModule(torch.nn.Module):
            """Runs a :class:`Graph` with torch; ``ops[i]`` is the module of node ``i``."""

            def __init__(self, graph: Graph, trainable: bool = False) -> None:
                super().__init__()
                self.graph = graph
                self.ops = torch.nn.ModuleList([node.op.to_torch(trainable) for node in graph.nodes])
                # freed as Graph.numpy frees them: a BioConvHash graph kept every map of both branches (8 of
                # 1.3 GB each at batch 1,024) until its forward returned
                self._drop = graph._freed_after()

            def forward(self, *args: Any, **kwargs: Any) -> Any:
                names = list(self.graph.inputs)
                if len(args) > len(names):
                    raise GraphError(f"the graph takes inputs {names}; got {len(args)} positional arguments.")
                vals = {**dict(zip(names, args)), **kwargs}
                if sorted(vals) != sorted(names):
                    raise GraphError(f"the graph takes inputs {names}; got {sorted(vals)}.")
                for mod, node, drop in zip(self.ops, self.graph.nodes, self._drop):
                    vals[node.output] = mod(*(vals[name] for name in node.inputs))
                    for name in drop:  # autograd keeps what backward needs on its own
                        del vals[name]
                return vals[self.graph.output]

            def to_graph(self) -> Graph:
                """The graph with this module's current (e.g. trained) arrays written back into its ops."""
                return self.graph.with_ops([mod.to_op() for mod in self.ops])

        _GRAPH_MODULE = GraphModule
    return _GRAPH_MODULE
