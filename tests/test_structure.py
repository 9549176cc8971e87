"""Static checks of src/dlbench: one-way layers and no import cycle (function-level imports
counted too: a deferred import saves start-up time, it does not hide a dependency), short
functions, and no module outside dlbench.tasks branching on a task or metric string.

Only `ast` and the file system: nothing here imports dlbench, so a cycle cannot hide behind the
order in which the tests happen to import things, and the file runs in a second.
"""
import ast
import re
from collections import deque
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "dlbench"
MAX_FUNCTION_LINES = 50  # DESIGN.md says ~60; 50 leaves room before a function is too long to read at once

TASK_NAMES = {"classify", "regress", "points", "modular", "lm"}
METRIC_NAMES = {"acc", "ppl", "loss"}  # "loss" is every run's number too, so only with a task/metric context
VOCABULARY = TASK_NAMES | METRIC_NAMES
# the other side of a comparison is about the task when one of its identifiers is one of these
# (`data.task`, `state.monitor`, `summary["target_metric"]`), not merely `metrics` or `kind`
CONTEXT = re.compile(r"(\w+_)?(task|metric|monitor)(_\w+)?")


def sources() -> dict[str, Path]:
    """{"dlbench.data.vision": path, "dlbench.data": path/__init__.py, ...}"""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


# ---------------------------------------------------------------- imports

def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_time_imports(body: list[ast.stmt]):
    """The import statements that run when the module is imported: at module level, inside
    if/try/with/loops and class bodies, but not in functions nor under `if TYPE_CHECKING:`."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not is_type_checking(node.test):
                yield from import_time_imports(node.body)
            yield from import_time_imports(node.orelse)
        elif isinstance(node, (ast.Try, ast.TryStar)):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from import_time_imports(block)
        elif isinstance(node, (ast.With, ast.AsyncWith, ast.ClassDef)):
            yield from import_time_imports(node.body)
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            yield from import_time_imports(node.body)
            yield from import_time_imports(node.orelse)
        elif isinstance(node, ast.Match):
            for case in node.cases:
                yield from import_time_imports(case.body)


def from_base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a `from X import ...` reads from, relative levels resolved."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    package = package[:len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def with_parents(module: str) -> list[str]:
    """Importing a.b.c runs a/__init__, then a/b/__init__, then a/b/c."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def every_import(tree: ast.Module):
    """Every import statement, wherever it runs (module level or inside a function), but those
    under `if TYPE_CHECKING:`, which never run."""
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and is_type_checking(node.test)
               for n in ast.walk(node)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skipped:
            yield node


def imported_modules(module: str, path: Path, modules: dict[str, Path], deferred: bool = True):
    """(dlbench module, line) for each dlbench module whose code `module` runs: when it is
    imported, and (deferred) in its functions."""
    tree = parse(path)
    for node in (every_import(tree) if deferred else import_time_imports(tree.body)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = from_base(module, path.name == "__init__.py", node)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for target in targets:
            for name in with_parents(target):
                # a package the importer lives in is already running its __init__: importing a
                # sibling through it is no dependency on it, reading a name from it is
                inside = module.startswith(name + ".") and name != target
                if name in modules and name != module and not inside:
                    yield name, node.lineno


def import_graph(deferred: bool = True) -> dict[str, dict[str, int]]:
    """{importer: {imported: line of the first statement that imports it}}"""
    modules = sources()
    graph = {}
    for module, path in modules.items():
        edges = graph[module] = {}
        for target, line in imported_modules(module, path, modules, deferred):
            edges.setdefault(target, min(line, edges.get(target, line)))
    return graph


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's components, iteratively; only those that hold a cycle."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root), on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child), on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def shortest_cycle(graph: dict[str, dict[str, int]], start: str, within: set[str]) -> list[str]:
    previous, queue = {}, deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node]):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [start, *reversed(path[:-1]), start] if node != start else [start, start]
            if child in within and child not in previous:
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"{start} is in a component but on no cycle")


def test_no_import_cycle():
    graph = import_graph()
    assert "dlbench.train" in graph and graph["dlbench.train"], "the import graph came out empty"
    modules = sources()
    lines = []
    for component in strongly_connected(graph):
        cycle = shortest_cycle(graph, component[0], set(component))
        lines.append(" -> ".join(cycle))
        for a, b in zip(cycle, cycle[1:]):
            lines.append(f"    {where(modules[a], graph[a][b])} {a} imports {b}")
        lines.append(f"    (all {len(component)} modules in this knot: {', '.join(component)})")
    if lines:
        pytest.fail("import cycle(s) among dlbench modules:\n" + "\n".join(lines), pytrace=False)


# The layers, lowest first: a module imports only from its own layer and those below (a package
# name stands for the package and everything in it). Within a layer, test_no_import_cycle keeps
# the imports one-way.
LAYERS = (
    ("leaves", {"dlbench", "dlbench.errors", "dlbench.status", "dlbench.metrics", "dlbench.choices",
                "dlbench.figures", "dlbench.artifacts", "dlbench.stats", "dlbench.search", "dlbench.paths"}),
    ("config", {"dlbench.config", "dlbench.schema", "dlbench.overrides", "dlbench.study_block",
                "dlbench.search.space", "dlbench.search.study"}),
    ("components", {"dlbench.data", "dlbench.models", "dlbench.tasks", "dlbench.callbacks", "dlbench.losses",
                    "dlbench.regularizers", "dlbench.optim", "dlbench.precision", "dlbench.loop", "dlbench.probing",
                    "dlbench.runtime", "dlbench.threads", "dlbench.weights", "dlbench.search.pruning"}),
    ("run", {"dlbench.run", "dlbench.train"}),
    ("sweeps and reading", {"dlbench.launchers", "dlbench.sweep", "dlbench.study", "dlbench.report",
                            "dlbench.runs", "dlbench.info", "dlbench.analysis", "dlbench.search.sweeper",
                            "dlbench.search.report"}),
    ("commands", {"dlbench.cli", "dlbench.__main__", "dlbench.launch", "dlbench.listing", "dlbench.report_cli",
                  "dlbench.data.install"}),
)


def layer_of(module: str) -> int:
    """The layer of a module: the one naming it or, failing that, its nearest package."""
    for name in reversed(with_parents(module)):
        found = [i for i, (_, names) in enumerate(LAYERS) if name in names]
        if found:
            return found[-1]
    raise AssertionError(f"{module} is in no layer of tests/test_structure.py LAYERS; add it where it belongs")


def test_every_module_imports_only_its_own_layer_and_those_below():
    graph, modules = import_graph(), sources()
    upward = [f"{where(modules[a], line)} {a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
              for a, edges in sorted(graph.items()) for b, line in sorted(edges.items())
              if layer_of(b) > layer_of(a)]
    if upward:
        pytest.fail("imports against the layers (a lower layer must not import a higher one):\n" + "\n".join(upward),
                    pytrace=False)


def test_the_layer_check_sees_a_deferred_import(tmp_path):
    """A function-level import is an edge: the check is not blind to what a function imports."""
    path = tmp_path / "mod.py"
    path.write_text("import os\n\ndef f():\n    from dlbench import report\n")
    modules = {"dlbench.errors": path, "dlbench.report": path}
    assert list(imported_modules("dlbench.errors", path, modules)) == [("dlbench.report", 4)]
    assert list(imported_modules("dlbench.errors", path, modules, deferred=False)) == []


# ---------------------------------------------------------------- function length

def test_no_function_over_50_lines():
    offenders = []
    for path in sources().values():
        for node in ast.walk(parse(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1  # from the `def` line: decorators excluded
                if length > MAX_FUNCTION_LINES:
                    offenders.append((str(path.relative_to(ROOT)), node.lineno, node.name, length))
    if offenders:
        pytest.fail(f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(
            f"{path}:{line} {name} ({length} lines)" for path, line, name, length in sorted(offenders)), pytrace=False)


# ---------------------------------------------------------------- task and metric strings

def literal_strings(node: ast.expr) -> set[str] | None:
    """The strings of a string constant, or of a tuple/list/set (or frozenset(...)) of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
            node.func.id in ("frozenset", "set", "tuple") and len(node.args) == 1 and not node.keywords:
        return literal_strings(node.args[0])
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts:
        parts = [literal_strings(e) for e in node.elts]
        if all(p is not None and len(p) == 1 for p in parts):
            return set().union(*parts)
    return None


def module_constants(tree: ast.Module) -> dict[str, set[str]]:
    """Names bound at module level to a collection of strings that holds a task or metric name."""
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        strings = literal_strings(value)
        if strings and strings & VOCABULARY and not isinstance(value, ast.Constant):
            constants.update({t.id: strings for t in targets if isinstance(t, ast.Name)})
    return constants


def visible_constants(module: str, path: Path, tree: ast.Module, constants: dict[str, dict]) -> dict:
    """This module's own string collections, plus those it imports by name from another dlbench module."""
    visible = dict(constants[module])
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = from_base(module, path.name == "__init__.py", node)
            for alias in node.names:
                if alias.name in constants.get(base, {}):
                    visible[alias.asname or alias.name] = constants[base][alias.name]
    return visible


def strings_of(node: ast.expr, visible: dict[str, set[str]]) -> set[str]:
    if isinstance(node, ast.Name) and node.id in visible:
        return visible[node.id]
    return literal_strings(node) or set()


def has_context(node: ast.expr) -> bool:
    names = [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]
    names += [n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)]
    names += [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    names += [a.arg for n in ast.walk(node) if isinstance(n, ast.Call) for a in n.keywords if a.arg]
    return any(CONTEXT.fullmatch(name.lower()) for name in names)


def suspicious(strings: set[str], other: ast.expr, affix: bool = False) -> bool:
    """A task name, "acc" or "ppl" (or slash-scoped, "val/acc") anywhere; "loss" only when the other
    side is a task, metric or monitor. `affix`: an endswith/startswith argument such as "/acc"."""
    for s in strings:
        core = s.strip("/._-") if affix else s
        names = {core, core.rsplit("/", 1)[-1]} | ({core.split("/", 1)[0]} if affix else set())
        if core in TASK_NAMES or names & (METRIC_NAMES - {"loss"}):
            return True
        if "loss" in names and has_context(other):
            return True
    return False


def string_dispatch(tree: ast.Module, visible: dict[str, set[str]]):
    """Line numbers of comparisons that branch on a task or metric name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for op, left, right in zip(node.ops, operands, operands[1:]):
                if isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) and (
                        suspicious(strings_of(right, visible), left) or suspicious(strings_of(left, visible), right)):
                    yield node.lineno
                    break
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("endswith", "startswith") and node.args:
            if suspicious(strings_of(node.args[0], visible), node.func.value, affix=True):
                yield node.lineno
        elif isinstance(node, ast.Match):  # `match data.task: case "lm":` is the same chain
            values = {v.value.value for c in node.cases for v in ast.walk(c.pattern)
                      if isinstance(v, ast.MatchValue) and isinstance(v.value, ast.Constant)
                      and isinstance(v.value.value, str)}
            if suspicious(values, node.subject):
                yield node.lineno


def test_only_tasks_compare_task_or_metric_strings():
    modules = sources()
    trees = {module: parse(path) for module, path in modules.items()}
    constants = {module: module_constants(tree) for module, tree in trees.items()}
    found = []
    for module, path in modules.items():
        if module == "dlbench.tasks" or module.startswith("dlbench.tasks.") or module == "dlbench.metrics":
            continue  # the task objects, and the one table of which way a metric is better
        visible = visible_constants(module, path, trees[module], constants)
        text = path.read_text().splitlines()
        for line in sorted(set(string_dispatch(trees[module], visible))):
            found.append(f"{where(path, line)}: {text[line - 1].strip()}")
    if found:
        pytest.fail("comparisons with a task or metric name outside dlbench.tasks (ask the task object "
                    "instead):\n" + "\n".join(found), pytrace=False)
