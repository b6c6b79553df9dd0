"""The rule DSL's syntax tree: plain frozen dataclasses, each with its source location.

Built by ``rewriter.dsl.parser`` (Lark Transformer, no checks), validated by
``rewriter.dsl.check`` over the whole tree, evaluated by ``rewriter.match``.
The syntax itself is documented in docs/rules.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from rewriter.errors import SourceLoc

_NOLOC = SourceLoc("<builtin>")

# ---------------------------------------------------------------- predicates


@dataclass(frozen=True)
class Lit:
    """A literal: int, float, string, bool, or a tuple of literals (for ``in``)."""

    value: object
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class AttrRef:
    """``attr.NAME``: the node attribute's value (None when absent)."""

    name: str
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class ConstInput:
    """``const(i)``: input i exists and is a constant (initializer or folded)."""

    index: int
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class ShapeRef:
    """``shape(i)[d]`` (input i) or ``out_shape(i)[d]`` (output i): a static dim, None if unknown."""

    index: int
    dim: int
    output: bool = False
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class RankRef:
    """``rank(i)``: rank of input i, None if unknown."""

    index: int
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class DtypeRef:
    """``dtype(i)``: numpy dtype name of input i ("float32", "int64", ...), None if unknown."""

    index: int
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class NodeProp:
    """A node property: ``fanout`` (consumers of output 0, graph outputs counted),
    ``num_inputs`` (non-empty inputs), ``is_graph_input(i)`` is expressed with
    ``GraphInput``."""

    name: Literal["fanout", "num_inputs"]
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class GraphInput:
    """``graph_input(i)``: input i is a model input."""

    index: int
    loc: SourceLoc = field(default=_NOLOC, compare=False)


CompareOp = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not in"]


@dataclass(frozen=True)
class Compare:
    op: CompareOp
    left: Expr
    right: Expr
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class Not:
    item: Expr
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class InputTest:
    """A yes/no fact about input i: ``zero(i)`` (a constant whose every value is 0),
    ``present(i)`` (given, not omitted), ``static(i)`` (every dimension of its shape known)."""

    test: Literal["zero", "present", "static"]
    index: int
    loc: SourceLoc = field(default=_NOLOC, compare=False)


Expr = (Lit | AttrRef | ConstInput | ShapeRef | RankRef | DtypeRef | NodeProp | GraphInput | InputTest | Compare | And
        | Or | Not)

# ---------------------------------------------------------------- patterns


@dataclass(frozen=True)
class PatternNode:
    """``name : Op1 | Op2 | @class | * [where PRED] [optional]``.

    ``ops`` entries are ONNX op types, ``*`` (any op), or spec classes
    ``@quantizable``, ``@agnostic``, ``@unified`` (resolved against the target).
    An optional node has at most one incoming and at most one outgoing
    pattern edge; when it is absent, its neighbours connect directly (or, at
    the end of a chain, the edge is simply dropped).
    """

    name: str
    ops: tuple[str, ...]
    where: Expr | None = None
    optional: bool = False
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class PatternEdge:
    """``src.out[i] -> dst.in[j]``: an output of src feeds an input of dst (None = any port).

    ``moves`` (written ``~>``): the output may also reach the input through a chain of data-movement
    nodes (``rewriter.match.matcher.MOVEMENT_OPS``), which the edge steps over without capturing them.
    """

    src: str
    dst: str
    src_port: int | None = None
    dst_port: int | None = None
    loc: SourceLoc = field(default=_NOLOC, compare=False)
    moves: bool = False


@dataclass(frozen=True)
class Pattern:
    name: str
    nodes: tuple[PatternNode, ...]
    edges: tuple[PatternEdge, ...]
    loc: SourceLoc = field(default=_NOLOC, compare=False)

    def node(self, name: str) -> PatternNode | None:
        return next((n for n in self.nodes if n.name == name), None)


# ---------------------------------------------------------------- rules


@dataclass(frozen=True)
class PortRef:
    """``cap.inputs``, ``cap.inputs[0, 1]``, ``cap.outputs``, ``cap.outputs[0]`` (ports None = all)."""

    capture: str
    direction: Literal["inputs", "outputs"]
    ports: tuple[int, ...] | None = None
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class EdgeRef:
    """``a -> b``: every tensor that flows from captured node a into captured node b."""

    src: str
    dst: str
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class Ignore:
    """``ignore`` (all captures) or ``ignore a, b``: keep those nodes in float."""

    captures: tuple[str, ...] = ()
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class Insert:
    """``insert a.inputs[0], b.outputs``: place FakeQuantize there (configs from the spec)."""

    targets: tuple[PortRef, ...]
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class Remove:
    """``remove a -> b`` or ``remove b.inputs[1]``: take FakeQuantize off those edges."""

    targets: tuple[PortRef | EdgeRef, ...]
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class Propagate:
    """``propagate a``: a FakeQuantize on a's output moves up onto a's pass-through inputs."""

    captures: tuple[str, ...]
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class Unify:
    """``unify a.inputs`` or ``unify a.inputs[0,1], a.inputs[4,5]``: each PortRef is one group sharing a scale."""

    groups: tuple[PortRef, ...]
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class Symmetric:
    """``symmetric a.inputs``: force symmetric mode on those FakeQuantizes (transformer Q·K^T)."""

    targets: tuple[PortRef, ...]
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class Asymmetric:
    """``asymmetric a.outputs``: prefer asymmetric mode there, where the spec allows it (one-sided data)."""

    targets: tuple[PortRef, ...]
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class PerTensor:
    """``per_tensor a.outputs``: the activation FakeQuantizes there take a per-tensor config (one scale and zero
    point), as a runtime's integer kernel requires; weights keep theirs (integer kernels take per-channel ones)."""

    targets: tuple[PortRef, ...]
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class Requantize:
    """``requantize a.outputs from a.inputs[0]``: where the named inputs of a (a data-movement op) all read
    values on one quantization grid, the named outputs are quantized again with that grid's parameters
    (lossless), so an integer runtime's chain of integer kernels is not broken by a float op."""

    outputs: PortRef
    inputs: PortRef
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class Int32Bias:
    """``int32_bias a``: the bias of linear layer a (its input 2, or the constant of the Add right after a
    MatMul) is stored as int32 with scale = activation scale x weight scale, where both are quantized."""

    captures: tuple[str, ...]
    loc: SourceLoc = field(default=_NOLOC, compare=False)


Action = Ignore | Insert | Remove | Propagate | Unify | Symmetric | Asymmetric | PerTensor | Requantize | Int32Bias


@dataclass(frozen=True)
class Rule:
    """``rule NAME { match PATTERN  ACTION ... }``."""

    name: str
    pattern: str
    actions: tuple[Action, ...]
    loc: SourceLoc = field(default=_NOLOC, compare=False)


@dataclass(frozen=True)
class RuleSet:
    """Everything loaded from one top-level rule file and its includes, in order.

    ``patterns`` keeps declaration order; ``rules`` keeps file order with
    includes expanded at the point of the include statement.
    """

    patterns: tuple[Pattern, ...]
    rules: tuple[Rule, ...]
    files: tuple[str, ...]

    def pattern(self, name: str) -> Pattern | None:
        """The first pattern declared as ``name``, None if there is none (one dict lookup)."""
        return self._patterns_by_name.get(name)

    @cached_property
    def _patterns_by_name(self) -> dict[str, Pattern]:
        # Built once: a rule set with tens of thousands of rules looks a pattern up per rule.
        by_name: dict[str, Pattern] = {}
        for p in self.patterns:
            by_name.setdefault(p.name, p)
        return by_name
