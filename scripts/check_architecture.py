"""Check the shape of src/ssehub: layers that only point down, no private names across modules.

Usage: python scripts/check_architecture.py [SRC_DIR]   (default: src/ssehub next to this script)

Fails (exit 1, one line per problem) on:

1. an import cycle between ssehub modules, counting every import: at module level, under
   ``if TYPE_CHECKING:`` and inside functions;
2. an import that points up the layers of docs/ARCHITECTURE.md (`LAYERS` below): a module may
   import its own layer and the layers below it only;
3. a module missing from `LAYERS` (a new module must be given its place);
4. ``x._name`` where ``_name`` is not defined by a class (or at module level) in the module that
   reads it but is defined by a class of another ssehub module, and ``from m import _name``
   across modules: private names stay inside the module that owns them. (Third-party private
   names are not this check's business.)

Reads the source with `ast`; imports nothing of ssehub.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

# Lower layers first. A module is matched by its dotted name or the longest listed package that
# holds it; "ssehub" itself is the package's public face (its __init__), the top layer.
LAYERS: list[tuple[str, ...]] = [
    ("ssehub.errors", "ssehub.types", "ssehub.request", "ssehub.wire", "ssehub.selectors"),
    ("ssehub.subscription", "ssehub.resume", "ssehub.authz", "ssehub.mercure"),
    ("ssehub.backends", "ssehub.hub"),
    ("ssehub._serving", "ssehub.event_stream"),
    ("ssehub.asgi", "ssehub.wsgi", "ssehub.integrations"),
    ("ssehub.server", "ssehub.client"),
    ("ssehub", "ssehub.__main__", "ssehub.redis"),
]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(name: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, names in enumerate(LAYERS):
        for prefix in names:
            inside = prefix != "ssehub" and name.startswith(prefix + ".")
            if (name == prefix or inside) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def imports(tree: ast.Module, name: str, is_package: bool, modules: set[str]) -> Iterator[str]:
    """Every ssehub module ``name`` imports, wherever the import statement stands."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "ssehub":
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            if base.split(".")[0] != "ssehub":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield sub if sub in modules else base


def private_names_defined(tree: ast.Module) -> set[str]:
    """Private names a module defines: at module level, in its classes, and as self._x
    (a store into another object's ``_x`` defines nothing: it is a reach into that object)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == "__slots__":
                    for elt in ast.walk(node.value):
                        if isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                            names.add(elt.value)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def class_private_names(tree: ast.Module) -> set[str]:
    """Private names the classes of a module define (methods, class attributes, self._x)."""
    names: set[str] = set()
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        names |= private_names_defined(ast.Module(body=cls.body, type_ignores=[]))
    return names


def check(root: Path) -> list[str]:
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    trees = {name: ast.parse(path.read_text(), str(path)) for name, path in files.items()}
    modules = set(files)
    problems: list[str] = []

    graph: dict[str, set[str]] = {}
    for name, tree in trees.items():
        is_package = files[name].name == "__init__.py"
        graph[name] = {m for m in imports(tree, name, is_package, modules) if m != name}

    for name in sorted(modules):
        if layer_of(name) is None:
            problems.append(f"{name}: not placed in a layer (add it to LAYERS)")
    for name, targets in sorted(graph.items()):
        for target in sorted(targets):
            low, high = layer_of(name), layer_of(target)
            if low is not None and high is not None and high > low:
                problems.append(f"{name}: imports {target}, a higher layer ({high} > {low})")
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]

    owned = {name: class_private_names(tree) for name, tree in trees.items()}
    for name, tree in sorted(trees.items()):
        mine = private_names_defined(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                attr = node.attr
                if attr.startswith("__") or attr in mine:
                    continue
                owners = sorted(m for m, names in owned.items() if attr in names and m != name)
                if owners:
                    problems.append(
                        f"{files[name]}:{node.lineno}: uses .{attr}, private to "
                        f"{' or '.join(owners)}"
                    )
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ssehub"):
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    if private and f"{node.module}.{alias.name}" not in modules:
                        problems.append(
                            f"{files[name]}:{node.lineno}: imports {alias.name}, private to "
                            f"{node.module}"
                        )
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path) for each strongly connected component larger than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(path_through(graph, set(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def path_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A closed path inside ``component`` starting at its first module, for the message."""
    start = min(component)
    path, seen, node = [start], {start}, start
    while True:
        nxt = min(n for n in graph[node] if n in component)
        path.append(nxt)
        if nxt in seen:
            return path[path.index(nxt) :]
        seen.add(nxt)
        node = nxt


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).parent.parent / "src" / "ssehub"
    problems = check(root.resolve())
    for problem in problems:
        print(problem)
    count = len(list(root.rglob("*.py")))
    if problems:
        print(f"check_architecture: {len(problems)} problem(s) in {count} modules")
        return 1
    print(f"check_architecture: {count} modules, layers point down, no cycle, no private reach")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
