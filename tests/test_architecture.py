"""The shape of the house (ARCHITECTURE.md), checked on the source: rooms, one-way imports, one of each.

These tests read the code with :mod:`ast`; they fail when someone adds a cycle, an import against
the direction of the layers, a second definition of an error class, a compatibility re-export, or
a torch import in the core.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: repository folder -> import name
FOLDERS = {"bartsmiles": "bartsmiles", "tasks": "bartsmiles.tasks", "attribution": "bartsmiles.attribution",
           "pretrained": "bartsmiles.pretrained"}
#: room -> layer; an import may only go to the same room or a lower layer
LAYERS = {
    "bartsmiles._version": 0, "bartsmiles.errors": 0, "bartsmiles.pretrained": 0,
    "bartsmiles.core": 1,
    "bartsmiles.data": 2,
    "bartsmiles.tasks": 3,
    "bartsmiles.model": 4,
    "bartsmiles.training": 5,
    "bartsmiles.seq2seq": 6, "bartsmiles.estimators": 6,
    "bartsmiles.evaluation": 7,
    "bartsmiles.attribution": 8,
    "bartsmiles.serve": 9,  # the web page and JSON API: calls the model API and attribution
    "bartsmiles.cli": 10,
    "bartsmiles": 11,  # the package's own __init__ (lazy load_pretrained only)
}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, name in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "user_dir" in path.parts:
                continue
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([name, *parts]) if parts else name] = path
    return out


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) of every import in ``module``, at any depth."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if _is_package(module) else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [alias.name for alias in node.names]
            found.append((target, names, node.lineno))
            for name in names:  # `from pkg import module`
                if f"{target}.{name}" in MODULES:
                    found.append((f"{target}.{name}", [], node.lineno))
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module in MODULES:
        for target, _, _ in _imports(module):
            if target in MODULES and target != module:
                graph[module].add(target)
    return graph


def _room(module: str) -> str:
    for room in sorted(LAYERS, key=len, reverse=True):
        if module == room or module.startswith(room + "."):
            return room
    raise AssertionError(f"{module} is in no room of LAYERS")


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_flow_one_way():
    wrong = []
    for module in MODULES:
        here = _room(module)
        for target, _, line in _imports(module):
            if target not in MODULES or target == "bartsmiles":
                continue
            there = _room(target)
            if there != here and LAYERS[there] >= LAYERS[here]:
                wrong.append(f"{MODULES[module].relative_to(ROOT)}:{line}: {here} imports {target}")
    assert not wrong, "imports against the layers (see ARCHITECTURE.md):\n" + "\n".join(wrong)


def test_few_modules_at_the_top():
    top = sorted(p.name for p in (ROOT / "bartsmiles").glob("*.py"))
    assert len(top) <= 12, top


def test_each_error_class_is_defined_once_in_errors():
    defined = defaultdict(list)
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = " ".join(ast.unparse(b) for b in node.bases)
                if node.name.endswith(("Error", "Warning")) or any(
                        word in bases for word in ("Error", "Exception", "Warning")):
                    defined[node.name].append(module)
    elsewhere = {name: mods for name, mods in defined.items() if mods != ["bartsmiles.errors"]}
    assert not elsewhere, f"error classes defined outside bartsmiles.errors: {elsewhere}"


def _defined_names(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.If):  # e.g. bartsmiles.tasks defines USER_DIR under a branch
            for sub in ast.walk(node):
                if isinstance(sub, ast.Assign):
                    names.update(n.id for t in sub.targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def test_no_reexports_names_come_from_their_home():
    """``from bartsmiles.x import name`` must name something x defines (packages' __init__ facades aside)."""
    wrong = []
    for module, path in MODULES.items():
        for target, names, line in _imports(module):
            if target not in MODULES or _is_package(target):
                continue
            defined = _defined_names(target)
            for name in names:
                if name not in defined and name != "*":
                    wrong.append(f"{path.relative_to(ROOT)}:{line}: {name} is not defined in {target}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("room", ["bartsmiles.core", "bartsmiles.data", "bartsmiles.errors"])
def test_core_and_data_never_import_torch_or_fairseq(room):
    modules = [m for m in MODULES if m == room or m.startswith(room + ".")]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'fairseq', 'fairseq_cli'))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{room} pulled in {out.stdout.strip()[:200]}"
    for module in modules:
        for target, _, line in _imports(module):
            assert target.split(".")[0] not in ("torch", "fairseq", "fairseq_cli"), f"{module}:{line} imports {target}"


def test_imports_sit_at_the_top_unless_lazy_and_said_so():
    """An import inside a function is allowed only with a comment saying why it is lazy."""
    wrong = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        top = {id(n) for n in tree.body}
        guarded = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Try, ast.If)) and node in tree.body:
                guarded.update(id(sub) for sub in ast.walk(node))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top and id(node) not in guarded:
                context = " ".join(lines[max(0, node.lineno - 5): node.end_lineno])  # the comment may head a group
                if "lazy" not in context:
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not wrong, "imports inside functions without a '# lazy: why' comment:\n" + "\n".join(wrong)


def test_all_lists_only_what_the_module_defines():
    """``__all__`` re-exporting an imported name would be a compatibility shim in disguise."""
    wrong = []
    for module, path in MODULES.items():
        if _is_package(module):
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                names = [e.value for e in node.value.elts]
                defined = _defined_names(module)
                wrong += [f"{module}: {n}" for n in names if n not in defined]
    assert not wrong, wrong
