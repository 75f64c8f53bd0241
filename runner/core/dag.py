"""Graph helpers over a step dependency map: cycles, topological layers, ancestors.

A dependency map is ``{step_id: [ids it depends on]}``. Edges to ids that are not keys of
the map are ignored here: naming an unknown step is a validation problem of its own, and
these helpers must stay usable on a workflow that has several problems at once.

Everything is iterative (no recursion limit on 10,000-step chains) and linear in the size
of the graph, except ``ancestors``, whose answer is quadratic in the worst case: it keeps
each node's ancestor set as a bitset (a Python int), so a 100 × 100 layered DAG costs a
few hundred thousand big-int ORs instead of ten thousand Python sets of ~10,000 strings.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import reduce
from graphlib import CycleError
from operator import or_

__all__ = [
    "AncestorMap",
    "CycleError",
    "ancestors",
    "find_cycles",
    "strongly_connected",
    "topo_layers",
]


def _index(deps: Mapping[str, Sequence[str]]) -> tuple[list[str], list[list[int]]]:
    """Nodes in map order and, per node, the indices of its known dependencies."""
    names = list(deps)
    pos = {n: i for i, n in enumerate(names)}
    edges: list[list[int]] = []
    lookup = pos.__getitem__
    for n in names:
        try:
            row = list(map(lookup, deps[n]))
        except KeyError:  # an unknown id: reported by validation, ignored here
            row = [pos[d] for d in deps[n] if d in pos]
        edges.append(row)  # duplicates are harmless to every algorithm below
    return names, edges


def _tarjan(n: int, edges: list[list[int]]) -> list[list[int]]:
    """Strongly connected components, dependencies before dependents (iterative Tarjan)."""
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    comps: list[list[int]] = []
    counter = 0
    for root in range(n):
        if index[root] != -1:
            continue
        work: list[tuple[int, int]] = [(root, 0)]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        while work:
            v, i = work[-1]
            row = edges[v]
            if i < len(row):
                work[-1] = (v, i + 1)
                w = row[i]
                if index[w] == -1:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = True
                    work.append((w, 0))
                elif on_stack[w] and index[w] < low[v]:
                    low[v] = index[w]
                continue
            work.pop()
            if work:
                u = work[-1][0]
                if low[v] < low[u]:
                    low[u] = low[v]
            if low[v] == index[v]:
                comp: list[int] = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    comp.append(w)
                    if w == v:
                        break
                comps.append(comp)
    return comps


def strongly_connected(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Strongly connected components, each in map order, dependencies first."""
    names, edges = _index(deps)
    return [[names[i] for i in sorted(c)] for c in _tarjan(len(names), edges)]


def _cycle_in(comp: list[int], edges: list[list[int]]) -> list[int]:
    """One simple cycle through the first node of a strongly connected component (BFS)."""
    members = set(comp)
    start = min(comp)
    if len(comp) == 1:
        return [start]
    parent: dict[int, int] = {}
    frontier = [start]
    while frontier:
        nxt: list[int] = []
        for v in frontier:
            for w in edges[v]:
                if w not in members:
                    continue
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    path.reverse()
                    return path
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    return sorted(comp)  # unreachable for a real SCC; keeps the function total


def find_cycles(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one, in map order.

    Each cycle is a list of ids where every id depends on the next and the last depends
    on the first: ``[a, b, c]`` reads "a -> b -> c -> a". A self-dependency is ``[a]``.
    """
    names, edges = _index(deps)
    cycles: list[list[int]] = []
    for comp in _tarjan(len(names), edges):
        if len(comp) > 1 or comp[0] in edges[comp[0]]:
            cycles.append(_cycle_in(comp, edges))
    cycles.sort(key=lambda c: c[0])
    return [[names[i] for i in c] for c in cycles]


def topo_layers(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Kahn layers: layer 0 has no dependencies, layer k depends only on layers < k.

    Within a layer, ids keep map order (the file order), so output is deterministic.
    Raises ``graphlib.CycleError`` (a ``ValueError``) with ``args[1]`` = one cycle.
    """
    names, edges = _index(deps)
    n = len(names)
    waiting = [len(row) for row in edges]
    dependents: list[list[int]] = [[] for _ in range(n)]
    for v, row in enumerate(edges):
        for d in row:
            dependents[d].append(v)
    layer = [v for v in range(n) if waiting[v] == 0]
    layers: list[list[str]] = []
    done = 0
    while layer:
        layers.append([names[v] for v in layer])
        done += len(layer)
        nxt: list[int] = []
        for v in layer:
            for w in dependents[v]:
                waiting[w] -= 1
                if waiting[w] == 0:
                    nxt.append(w)
        nxt.sort()
        layer = nxt
    if done != n:
        cycle = find_cycles(deps)[0]
        raise CycleError("dependency cycle: " + " -> ".join([*cycle, cycle[0]]), cycle)
    return layers


class AncestorMap(Mapping[str, frozenset[str]]):
    """``{step_id: frozenset of every step it transitively depends on}``, built lazily.

    Sets are kept as bitsets and only turned into frozensets when looked up, so
    membership questions (``has``) on a 10,000-step DAG stay cheap.
    """

    __slots__ = ("_bits", "_cache", "_names", "_pos")

    def __init__(self, names: list[str], bits: list[int]) -> None:
        self._names = names
        self._pos = {n: i for i, n in enumerate(names)}
        self._bits = bits
        self._cache: dict[str, frozenset[str]] = {}

    def has(self, node: str, ancestor: str) -> bool:
        """Whether ``node`` (transitively) depends on ``ancestor``; False for unknown ids."""
        i = self._pos.get(node)
        j = self._pos.get(ancestor)
        if i is None or j is None:
            return False
        return bool((self._bits[i] >> j) & 1)

    def __getitem__(self, node: str) -> frozenset[str]:
        hit = self._cache.get(node)
        if hit is not None:
            return hit
        digits = bin(self._bits[self._pos[node]])[:1:-1]  # least significant bit first
        names = self._names
        out: list[str] = []
        i = digits.find("1")
        while i != -1:
            out.append(names[i])
            i = digits.find("1", i + 1)
        result = frozenset(out)
        self._cache[node] = result
        return result

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, node: object) -> bool:
        return node in self._pos


def ancestors(deps: Mapping[str, Sequence[str]]) -> AncestorMap:
    """Transitive dependencies of every node; members of a cycle share their cycle's set.

    Works on cyclic maps too (validation reports cycles separately and still checks
    template references), by folding each strongly connected component into one bitset.
    """
    names, edges = _index(deps)
    bits = _acyclic_bits(edges)
    if bits is None:
        bits = _cyclic_bits(edges)
    return AncestorMap(names, bits)


def _acyclic_bits(edges: list[list[int]]) -> list[int] | None:
    """Ancestor bitsets by one iterative post-order DFS; None if the graph has a cycle."""
    n = len(edges)
    bits = [0] * n
    closed: list[int | None] = [None] * n  # ancestors plus the node itself, once done
    entered = [False] * n
    for root in range(n):
        if closed[root] is not None:
            continue
        stack = [root]
        while stack:
            v = stack[-1]
            if closed[v] is not None:
                stack.pop()
                continue
            if not entered[v]:
                entered[v] = True
                pending = [d for d in edges[v] if closed[d] is None]
                if pending:
                    for d in pending:
                        if entered[d]:
                            return None  # entered but not closed: on the DFS path
                    stack += pending
                    continue
            acc = reduce(or_, map(closed.__getitem__, edges[v]), 0)
            bits[v] = acc
            closed[v] = acc | (1 << v)
            stack.pop()
    return bits


def _cyclic_bits(edges: list[list[int]]) -> list[int]:
    """Ancestor bitsets over the condensation: a cycle's members share one set."""
    bits = [0] * len(edges)
    for comp in _tarjan(len(edges), edges):  # dependencies come first
        acc = 0
        for v in comp:
            for d in edges[v]:
                acc |= bits[d] | (1 << d)
        for v in comp:
            bits[v] = acc  # for a cycle this includes v: it depends on itself
    return bits
