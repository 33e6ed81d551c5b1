"""The product's packages import each other without a circle, and without imports hidden in functions.

projects is the lower layer (jobs reaches it, never the reverse: it tells jobs through signals); the
Celery tasks are sent by name (jobs/dispatch.py), so nothing imports jobs/tasks.py; actions never
import the runner. Read from the source (ast), so that a circle fails here before it fails at import.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("dxweb", "jobs", "projects")


def product_modules():
    """Module name -> path, for every module of the product's packages (migrations aside)."""
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if "migrations" in parts:
                continue
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports(path):
    """Yield (import node, whether it sits inside a function) for every import in the file."""

    def walk(nodes, in_function):
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node, in_function
            for child in ast.iter_child_nodes(node):
                yield from walk([child], in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))

    yield from walk(ast.parse(path.read_text()).body, False)


def targets(module, path, node, modules):
    """The product modules an import statement loads (the most precise known name for each)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join(package + ([base] if base else []))
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name and name != module:
            yield name


def graph():
    modules = product_modules()
    edges, hidden = {m: set() for m in modules}, []
    for module, path in modules.items():
        for node, in_function in imports(path):
            found = set(targets(module, path, node, modules))
            if in_function and found:
                hidden.append((module, node.lineno, sorted(found)))
            elif not in_function:
                edges[module] |= found
    return edges, hidden


def cycles(edges):
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_through_others():
    edges, hidden = graph()
    for module, _, found in hidden:  # a circle closed inside a function is a circle all the same
        edges[module] |= set(found)
    assert cycles(edges) == []


def test_no_product_module_is_imported_inside_a_function():
    _, hidden = graph()
    # AppConfig.ready() is where Django allows an app to import its models' users.
    allowed = {
        ("jobs.config", ("projects.models",)),
        ("jobs.config", ("projects.signals",)),
        ("jobs.config", ("jobs.ending",)),
        ("jobs.config", ("jobs.signals",)),
        ("jobs.config", ("jobs.workflows.analyses", "jobs.workflows.stages")),
    }
    assert [h for h in hidden if (h[0], tuple(h[2])) not in allowed] == []


def test_projects_never_imports_jobs():
    edges, hidden = graph()
    reached = {(a, b) for a, bs in edges.items() for b in bs} | {(a, b) for a, _, bs in hidden for b in bs}
    assert [(a, b) for a, b in sorted(reached) if a.startswith("projects") and b.startswith("jobs")] == []


def test_tasks_are_sent_by_name_and_actions_never_import_the_runner():
    edges, _ = graph()
    assert [a for a, bs in edges.items() if "jobs.tasks" in bs] == []
    assert [b for b in edges["jobs.actions"] if b.startswith("jobs.execution")] == []
