"""The collector's house rules, checked by ``make lint``: no import cycle among its modules, every
import pointing down the layers below, and no module longer than MAX_LINES.

Every import counts, also those inside functions (a function-level import is how a cycle hides).
A module's layer is that of the longest prefix in LAYERS that names it (a package or a module);
a module may import from its own layer or any layer below it, never above. Exit 1 naming each
breach, 0 when the house holds.

Usage: ``python tools/check_layers.py [--no-layers] [PACKAGE_DIR]`` (default collector/di2siem).
``--no-layers`` is for a package without a LAYERS list (the sandbox's di2siem_sandbox): no cycle
and no module over MAX_LINES only.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

MAX_LINES = 450

# Top to bottom: a module may import only from its own layer or below.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__",),
    ("cli", "cli_parser"),
    ("ops",),
    ("scheduler", "perf"),
    ("engine",),
    ("intakes",),
    ("shaping", "batching"),
    ("source",),
    ("transport", "throttle"),
    ("state",),
    ("config",),
    ("log", "redaction", "timeutil", "errors", "__init__"),
)


def modules(root: Path) -> dict[str, Path]:
    """{dotted name relative to the package: file} for every module under root."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _package_of(name: str, path: Path) -> list[str]:
    parts = name.split(".") if name != "__init__" else []
    return parts if path.name == "__init__.py" else parts[:-1]


def imports_of(name: str, path: Path, known: Iterable[str], top: str) -> Iterator[str]:
    """The modules of package ``top`` that ``name`` imports (relative imports, and absolute ones
    of the package itself), resolved to the module where one is named."""
    known = set(known)
    package = _package_of(name, path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.split(".")[0] == top:
                target = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:
                candidate = ".".join([*target, alias.name])
                if candidate in known:
                    yield candidate
                elif target:
                    yield ".".join(target)
                else:
                    yield "__init__"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == top and len(parts) > 1:
                    yield ".".join(parts[1:])


def layer_of(name: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer index)
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            if name == prefix or name.startswith(prefix + "."):
                length = len(prefix.split("."))
                if best is None or length > best[0]:
                    best = (length, index)
    return None if best is None else best[1]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
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
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def breaches(root: Path, layered: bool = True) -> list[str]:
    found = modules(root)
    graph = {
        name: {t for t in imports_of(name, path, found, root.name) if t in found and t != name}
        for name, path in found.items()
    }
    problems = []
    for name, path in found.items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            problems.append(f"{path}: {lines} lines, more than {MAX_LINES}: split it by its jobs")
        if not layered:
            continue
        layer = layer_of(name)
        if layer is None:
            problems.append(f"{path}: in no layer of tools/check_layers.py LAYERS: add it")
            continue
        for target in sorted(graph[name]):
            target_layer = layer_of(target)
            if target_layer is not None and target_layer < layer:
                problems.append(
                    f"{path}: imports {target} from a layer above it ({LAYERS[target_layer]} "
                    f"over {LAYERS[layer]}): move the shared part down or invert the call"
                )
    for component in cycles(graph):
        problems.append("import cycle: " + " -> ".join(component) + ": break it")
    return problems


def main(argv: list[str]) -> int:
    layered = "--no-layers" not in argv
    args = [a for a in argv if a != "--no-layers"]
    root = Path(args[0]) if args else Path(__file__).resolve().parents[1] / "collector/di2siem"
    problems = breaches(root, layered)
    for problem in problems:
        print(f"check_layers: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
