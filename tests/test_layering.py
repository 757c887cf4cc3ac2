"""The house's floors: every tinyasc module imports only from its own package or from floors below.

The floor plan is docs/architecture.md; this test is its guard. It reads every module's imports as
written (inside functions too) and fails on an import that runs up or sideways between floors, on
an import circle between modules or between packages, and on an import inside a function that is
not an optional dependency marked with a comment.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "tinyasc"

# Bottom to top. Packages on one floor do not import each other.
FLOORS = [
    ["base"],
    ["audio"],
    ["data"],
    ["augment", "models"],
    ["complexity", "config", "metrics"],
    ["modelfile"],
    ["training"],
    ["evaluation"],
    ["experiment"],
    ["compress"],
    ["deploy"],
    ["systems"],
    ["cli"],
]
ROOM = {room: level for level, rooms in enumerate(FLOORS) for room in rooms}
# Imports allowed inside functions: dependencies that are optional at import time (with a comment).
OPTIONAL = {"onnx", "onnxruntime", "fcntl", "codecarbon"}


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ["tinyasc", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = modules()


def room_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def imports(path: Path, module: str):
    """(imported tinyasc module or third-party top-level name, line, inside a function, source line)."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    in_function = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_function |= {id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from package import submodule` depends on the submodule, not on the package's __init__
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            yield name, node.lineno, id(node) in in_function, lines[node.lineno - 1]


def edges() -> dict[str, set[str]]:
    graph = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for name, *_ in imports(path, module):
            if name.split(".")[0] == "tinyasc" and name in MODULES and name != module:
                graph[module].add(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_package_has_a_floor():
    rooms = {room_of(m) for m in MODULES} - {None}
    assert rooms <= set(ROOM), f"add {sorted(rooms - set(ROOM))} to FLOORS and docs/architecture.md"


def test_imports_run_only_downward():
    wrong = []
    for module, path in MODULES.items():
        mine = room_of(module)
        for name, line, _, _ in imports(path, module):
            theirs = room_of(name) if name.startswith("tinyasc.") else None
            if name.split(".")[0] != "tinyasc" or theirs is None or mine is None or theirs == mine:
                continue
            if ROOM[theirs] >= ROOM[mine]:
                wrong.append(f"{path.relative_to(ROOT.parent)}:{line}: {mine} (floor {ROOM[mine]}) imports "
                             f"{name} (floor {ROOM[theirs]})")
    assert not wrong, "\n".join(wrong)


def test_no_import_circle_between_modules():
    assert find_cycle(edges()) is None, " -> ".join(find_cycle(edges()))


def test_no_import_circle_between_packages():
    packages: dict[str, set[str]] = {}
    for module, targets in edges().items():
        mine = room_of(module) or "tinyasc"
        packages.setdefault(mine, set()).update(room_of(t) or "tinyasc" for t in targets if room_of(t) != mine)
    assert find_cycle(packages) is None, " -> ".join(map(str, find_cycle(packages)))


def test_imports_inside_functions_are_optional_dependencies_only():
    wrong = []
    for module, path in MODULES.items():
        for name, line, inside, text in imports(path, module):
            if inside and (name.split(".")[0] not in OPTIONAL or "#" not in text):
                wrong.append(f"{path.relative_to(ROOT.parent)}:{line}: {text.strip()}")
    assert not wrong, "move these imports to the top of their module:\n" + "\n".join(wrong)


@pytest.mark.parametrize("source,expected", [
    ("from tinyasc.cli import main\n", "runs up"),  # a low floor importing the command line
    ("def f():\n    from tinyasc.models import create_model\n", "inside"),
])
def test_the_guard_catches_what_it_guards_against(tmp_path, monkeypatch, source, expected):
    """The checks above fail on the two faults they exist for (checked on a planted module)."""
    planted = tmp_path / "tinyasc" / "audio" / "planted.py"
    planted.parent.mkdir(parents=True)
    planted.write_text(source)
    found = list(imports(planted, "tinyasc.audio.planted"))
    name, _, inside, _ = found[0]
    if expected == "runs up":
        assert ROOM[room_of(name)] > ROOM["audio"]
    else:
        assert inside and name.split(".")[0] not in OPTIONAL
