"""Axis roles: which axes of an op are attention heads, head dimensions or the hidden size.

Coupling rules say which channels go together; role rules say what those channels *are*, so that
groups can be classified (`Group.kind`: 'heads', 'head_dim', 'hidden', 'mlp'), selected by kind,
and so that the analysis can prefer head groups or head-dim groups where a reshape offers both.
Roles come from the ops alone, never from module names:

- attention (SDPA, or a product of two computed tensors of rank >= 3 as in q @ k^T and p @ v):
  axis -3 of every operand is the head axis, the contracted axis and v's last axis are head dims;
- the hidden size (the residual stream): the normalized axes of a LayerNorm/RMSNorm (GroupNorm with
  one group), embedding columns, and the axes of a sum of two computed tensors of equal shape that
  come from different computations (a residual connection).

A group whose channels touch several roles takes the first of heads, head_dim, hidden; a group with
none is an 'mlp' group (an MLP's hidden width, a conv's filters).
"""

from __future__ import annotations

from collections.abc import Callable

from prunec.ir.graph import Graph
from prunec.ir.slots import Slot
from prunec.rules.api import OpView
from prunec.rules.families import broadcasting_rule, same_shape_rule
from prunec.rules.registry import RuleRegistry, normalize_key

HEADS, HEAD_DIM, HIDDEN, MLP = "heads", "head_dim", "hidden", "mlp"
RESIDUAL = "residual"
"""A candidate residual sum, before `axis_roles` confirms it as HIDDEN."""
KINDS = (HEADS, HEAD_DIM, HIDDEN, MLP)
"""Group kinds, in precedence order."""

RoleRule = Callable[[OpView], list[tuple[Slot, str]]]
ROLE_RULES: dict[str, RoleRule] = {}
"""op key -> rule naming the role of some of the op's axes."""


def role_rule(*keys: str) -> Callable[[RoleRule], RoleRule]:
    """Decorator: register a role rule for op keys (a later registration replaces an earlier one)."""
    def wrap(fn: RoleRule) -> RoleRule:
        for k in keys:
            ROLE_RULES[normalize_key(k)] = fn
        return fn
    return wrap


@role_rule("aten::scaled_dot_product_attention")
def sdpa_roles(node: OpView) -> list[tuple[Slot, str]]:
    """q, k, v and the output are (..., heads, tokens, head_dim)."""
    out: list[tuple[Slot, str]] = []
    for t in (node.input("query"), node.input("key"), node.input("value"), node.output(0)):
        if t.rank >= 3:
            out.append((t.axis(-3), HEADS))
        out.append((t.axis(-1), HEAD_DIM))
    return out


@role_rule("aten::matmul", "aten::bmm")
def attention_product_roles(node: OpView) -> list[tuple[Slot, str]]:
    """Q @ k^T and p @ v: two computed tensors (..., heads, n, k) @ (..., heads, k, m)."""
    a, b, y = node.input(0), node.input(1), node.output(0)
    if a.is_param or b.is_param or a.rank < 3 or b.rank < 3:
        return []
    return [(a.axis(-3), HEADS), (b.axis(-3), HEADS), (y.axis(-3), HEADS),
            (a.axis(-1), HEAD_DIM), (b.axis(-2), HEAD_DIM), (b.axis(-1), HEAD_DIM), (y.axis(-1), HEAD_DIM)]


@role_rule("aten::layer_norm", "aten::native_layer_norm", "aten::rms_norm", "aten::_fused_rms_norm")
def norm_roles(node: OpView) -> list[tuple[Slot, str]]:
    """The normalized (last) axes carry the hidden size."""
    x = node.input("input")
    n = len(list(node.attr("normalized_shape") or ()))  # type: ignore[call-overload]
    return [(x.axis(x.rank - n + k), HIDDEN) for k in range(n)]


@role_rule("aten::group_norm")
def group_norm_roles(node: OpView) -> list[tuple[Slot, str]]:
    """GroupNorm with one group normalizes over all channels (PoolFormer's channel norm)."""
    x = node.input("input")
    return [(x.axis(1), HIDDEN)] if node.int_attr("num_groups", 0) == 1 and x.rank >= 2 else []


@role_rule("aten::embedding")
def embedding_roles(node: OpView) -> list[tuple[Slot, str]]:
    """Embedding columns are the hidden size."""
    return [(node.input("weight").axis(1), HIDDEN)]


@role_rule("aten::add", "aten::add_", "aten::sub")
def residual_roles(node: OpView) -> list[tuple[Slot, str]]:
    """A sum of two computed tensors of the same shape may be a residual connection (confirmed by
    `axis_roles`: the two operands must come from different computations).
    """
    ins = node.inputs
    if len(ins) != 2 or ins[0].is_param or ins[1].is_param or ins[0].shape != ins[1].shape:
        return []
    y = node.output(0)
    return [(t.axis(k), RESIDUAL) for t in (ins[0], ins[1], y) for k in range(t.rank)]


def _sources(graph: Graph, value: str, registry: RuleRegistry,
             memo: dict[str, frozenset[str]]) -> frozenset[str]:
    """The first ops above `value` that are not positionwise (elementwise, broadcasting, views)."""
    if value in memo:
        return memo[value]
    memo[value] = frozenset()  # cycles cannot happen in a DAG; this guards deep recursion re-entry
    stack, seen, found = [value], set(), set()
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        op = graph.producer(v)
        if op is None:
            continue
        entry = registry.get(op.op)
        positionwise = registry.is_view_like(op.op) or (
            entry is not None and (entry.rule in (same_shape_rule, broadcasting_rule)
                                 or getattr(entry.rule, "positionwise", False)))
        if not positionwise:
            found.add(op.name)
            continue
        stack += [u.name for _, u in graph.inputs(op) if not u.is_state]
    memo[value] = frozenset(found)
    return memo[value]


def axis_roles(graph: Graph, registry: RuleRegistry) -> dict[str, list[tuple[Slot, str]]]:
    """Op name -> the (slot, role) tags of its role rule, residual candidates confirmed: a sum is a
    residual when its operands come from different computations (x + f(x)), not when both are
    functions of one value (the x + 0.044715 * x**3 inside a tanh-GELU).
    """
    from prunec.analysis.coupling import _param_derived

    derived = _param_derived(graph, registry)
    memo: dict[str, frozenset[str]] = {}
    out: dict[str, list[tuple[Slot, str]]] = {}
    for node in graph.ops():
        rule = ROLE_RULES.get(node.op)
        if rule is None:
            continue
        try:
            tags = rule(OpView(graph, node, derived.__contains__))
        except Exception:
            continue
        if any(role == RESIDUAL for _, role in tags):
            a, b = (v.name for _, v in graph.inputs(node)[:2])
            if _sources(graph, a, registry, memo) & _sources(graph, b, registry, memo):
                continue
            tags = [(slot, HIDDEN if role == RESIDUAL else role) for slot, role in tags]
        if tags:
            out[node.name] = tags
    return out
