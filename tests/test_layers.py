"""Layers: the import graph of discrete_priors/, experiments/ and analysis/ has no circle and no
arrow pointing up from the foundation (latents, nets, data, metrics, training) into the priors,
the autoencoder, the experiments or the CLI layer (cli.py, commands.py, demo.py).

How the graph is read (``ast``, nothing is imported):

* every ``import`` / ``from … import`` statement counts, at module level, inside functions and
  under ``if TYPE_CHECKING:`` alike — a deferred or type-only import is still a dependency;
* a module is named by its dotted path; a package's ``__init__.py`` is the package itself;
* ``from pkg import name`` is an arrow to ``pkg.name`` when that is a module of the tree (a
  submodule), else to ``pkg`` (a name its ``__init__`` defines or re-exports);
* ``import a.b.c`` is one arrow to ``a.b.c`` only. Python runs the parents' ``__init__`` first, but
  that implicit step is not an arrow: were it one, every package ``__init__`` that re-exports its
  submodules (``latents/__init__.py`` importing ``latents.binary``) would form a "cycle" with
  each of them, although neither needs the other to load. A real circle through an ``__init__``
  is still caught: a submodule that writes ``from discrete_priors.priors import X`` while
  ``priors/__init__.py`` imports that submodule is one.
* a string constant that is exactly a dotted module name of the tree (the lazy registries'
  ``"discrete_priors.priors.bernoulli"``) is a *dynamic* arrow. It counts for the layer rule (an
  arrow is an arrow however it is loaded) but not for circles: a lookup deferred to call time
  cannot deadlock an import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("discrete_priors", "experiments", "analysis")

FOUNDATION = tuple(f"discrete_priors.{name}" for name in ("latents", "nets", "data", "metrics", "training"))
CLI = ("discrete_priors.cli", "discrete_priors.commands", "discrete_priors.demo")
ABOVE_FOUNDATION = ("discrete_priors.priors", "discrete_priors.autoencoder", "experiments", *CLI)

# rule id -> (layers the arrow may not start in, layers it may not end in, modules exempt as sources)
RULES = {
    # the acceptance rule of issue 10: latents/nets/data/metrics/training → priors/autoencoder/experiments/CLI
    "foundation-upward": (FOUNDATION, ABOVE_FOUNDATION, ()),
    # the CLI is the top: the stages, runners and analysis are its users' tools, never its clients
    "into-the-cli": (PACKAGES, CLI, (*CLI, "discrete_priors.__main__")),
    # the autoencoder and the priors meet only in the pipeline (the trainer owns LossOutput)
    "autoencoder-to-priors": (("discrete_priors.autoencoder",), ("discrete_priors.priors",), ()),
    "priors-to-autoencoder": (("discrete_priors.priors",), ("discrete_priors.autoencoder",), ()),
}


class Source(NamedTuple):
    text: str
    is_package: bool  # an __init__.py: relative imports resolve against the module itself
    path: str  # for messages


class Arrow(NamedTuple):
    source: str
    target: str
    where: str  # "path:line"
    dynamic: bool  # a module name in a string, not an import statement


def read_tree(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, Source]:
    """Module name -> source of every .py file under the given top-level packages."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            modules[name] = Source(path.read_text(encoding="utf-8"), is_package, str(path.relative_to(root)))
    return modules


def _known(name: str, modules: Mapping[str, Source]) -> str | None:
    """The longest prefix of a dotted name that is a module of the tree (None: outside it)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in modules:
            return prefix
    return None


def _absolute(node: ast.ImportFrom, module: str, source: Source) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if source.is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def arrows(modules: Mapping[str, Source]) -> list[Arrow]:
    """Every arrow between modules of the tree, in file and line order."""
    found = []
    for module, source in sorted(modules.items()):
        for node in ast.walk(ast.parse(source.text, filename=source.path)):
            targets, dynamic = [], False
            if isinstance(node, ast.Import):
                targets = [_known(alias.name, modules) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, module, source)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    targets.append(submodule if submodule in modules else _known(base, modules))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value and node.value in modules:
                targets, dynamic = [node.value], True
            for target in targets:
                if target is not None and target != module:
                    found.append(Arrow(module, target, f"{source.path}:{node.lineno}", dynamic))
    return sorted(set(found), key=lambda a: (a.where.split(":")[0], int(a.where.split(":")[1]), a.target))


def _in(module: str, layers: Iterable[str]) -> bool:
    return any(module == layer or module.startswith(layer + ".") for layer in layers)


def upward_arrows(found: Iterable[Arrow], below: Iterable[str] = FOUNDATION,
                  above: Iterable[str] = ABOVE_FOUNDATION, exempt: Iterable[str] = ()) -> list[Arrow]:
    """Arrows from a module of a layer in ``below`` (not one in ``exempt``) into one of a layer in ``above``."""
    below, above, exempt = tuple(below), tuple(above), tuple(exempt)
    return [a for a in found if _in(a.source, below) and not _in(a.source, exempt) and _in(a.target, above)]


def cycles(found: Iterable[Arrow]) -> list[list[str]]:
    """Circles [m0, m1, …, m0] of static imports: for every arrow u → v inside a strongly
    connected group, the shortest circle through it (v back to u), each written from its
    alphabetically first module, duplicates dropped — so every arrow on a circle is shown."""
    graph: dict[str, set[str]] = {}
    for a in found:
        if not a.dynamic:
            graph.setdefault(a.source, set()).add(a.target)
            graph.setdefault(a.target, set())
    # Tarjan's strongly connected components, iterative so a deep graph cannot hit the recursion limit.
    index, low, on_stack, stack, groups, counter = {}, {}, set(), [], [], 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(group)
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    circles = set()
    for group in groups:
        for source in group:
            for target in graph[source] & group:
                circle = [source] + _shortest_path(graph, group, target, source)[:-1]
                start = circle.index(min(circle))
                circles.add(tuple(circle[start:] + circle[:start] + [circle[start]]))
    return sorted(list(c) for c in circles)


def _shortest_path(graph: Mapping[str, set[str]], group: set[str], start: str, end: str) -> list[str]:
    """Breadth first inside the group, ties broken alphabetically: [start, …, end]."""
    parent, frontier = {start: None}, [start]
    while end not in parent:
        step = []
        for node in frontier:
            for child in sorted(graph[node] & group):
                if child not in parent:
                    parent[child] = node
                    step.append(child)
        frontier = step
    path, node = [], end
    while node is not None:
        path.insert(0, node)
        node = parent[node]
    return path


def _describe(circle: list[str], found: Iterable[Arrow]) -> str:
    where = {(a.source, a.target): a.where for a in found if not a.dynamic}
    return " → ".join(circle) + "   (" + ", ".join(where[pair] for pair in zip(circle, circle[1:])) + ")"


def test_no_import_circle():
    found = arrows(read_tree())
    circles = cycles(found)
    assert not circles, "import circles:\n  " + "\n  ".join(_describe(c, found) for c in circles)


@pytest.mark.parametrize("rule", RULES)
def test_no_arrow_against_the_layers(rule):
    wrong = upward_arrows(arrows(read_tree()), *RULES[rule])
    below, above, _ = RULES[rule]
    assert not wrong, f"arrows from {', '.join(below)} into {', '.join(above)}:\n  " + "\n  ".join(
        f"{a.source} → {a.target}   ({a.where}{', by name' if a.dynamic else ''})" for a in wrong)


def test_the_graph_is_the_real_tree():
    """Guards the tests above against passing on an empty or misread tree."""
    modules = read_tree()
    found = {(a.source, a.target) for a in arrows(modules)}
    assert {"discrete_priors.priors.bernoulli", "discrete_priors.latents.base", "experiments.common", "analysis.tables"} <= set(modules)
    assert len(modules) >= 60
    assert ("discrete_priors.priors.bernoulli", "discrete_priors.priors.bernoulli_math") in found
    assert ("discrete_priors.latents", "discrete_priors.latents.binary") in found


SYNTHETIC = {
    "pkg/__init__.py": "from pkg.low import helper\nfrom pkg.mid import thing\n",  # re-exports: no circle
    "pkg/low/__init__.py": "from .util import helper\n",
    "pkg/low/util.py": "import os\n\ndef helper():\n    from pkg.high import api  # deferred, still an arrow\n",
    "pkg/high.py": "from pkg import mid\napi = 1\n",  # `mid` is a submodule: an arrow to pkg.mid, not pkg
    "pkg/mid.py": "from . import low\nthing = 2\n",
    "pkg/leaf.py": "from pkg import thing\nimport pkg.low.util as u\n",  # `thing` is not a module: an arrow to pkg
    "pkg/low/names.py": "REGISTRY = {'x': 'pkg.high'}\n",  # an upward arrow by name only
}


def test_checker_reports_a_known_circle_and_a_known_upward_arrow(tmp_path):
    for path, text in SYNTHETIC.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    modules = read_tree(tmp_path, ["pkg"])
    assert sorted(modules) == ["pkg", "pkg.high", "pkg.leaf", "pkg.low", "pkg.low.names", "pkg.low.util", "pkg.mid"]
    found = arrows(modules)
    assert {(a.source, a.target, a.dynamic) for a in found} == {
        ("pkg", "pkg.low", False), ("pkg", "pkg.mid", False),
        ("pkg.low", "pkg.low.util", False),
        ("pkg.low.util", "pkg.high", False),
        ("pkg.high", "pkg.mid", False),
        ("pkg.mid", "pkg.low", False),
        ("pkg.leaf", "pkg", False), ("pkg.leaf", "pkg.low.util", False),
        ("pkg.low.names", "pkg.high", True),
    }
    assert next(a.where for a in found if a.source == "pkg.low.util") == "pkg/low/util.py:4"
    # pkg.high → pkg.mid → pkg.low → pkg.low.util → pkg.high; the re-exporting pkg/__init__ is in none.
    assert cycles(found) == [["pkg.high", "pkg.mid", "pkg.low", "pkg.low.util", "pkg.high"]]
    assert [(a.source, a.target, a.dynamic) for a in upward_arrows(found, below=["pkg.low"], above=["pkg.high"])] == [
        ("pkg.low.names", "pkg.high", True), ("pkg.low.util", "pkg.high", False)]
    assert [a.source for a in upward_arrows(found, ["pkg.low"], ["pkg.high"], exempt=["pkg.low.names"])] == ["pkg.low.util"]


def test_two_separate_circles_are_reported_separately():
    modules = {name: Source(text, False, name) for name, text in {
        "a": "import b\n", "b": "import a\n", "c": "import d\n", "d": "import e\n", "e": "import c\nimport a\n"}.items()}
    assert cycles(arrows(modules)) == [["a", "b", "a"], ["c", "d", "e", "c"]]
