"""The layers' imports point one way (DESIGN.md): checked on the source, every import, also
those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nbpipe"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _offenders(under: str, forbidden: tuple[str, ...], exempt: str | None = None) -> list[str]:
    return [f"{path.relative_to(PACKAGE.parent)}: {name}"
            for path in sorted((PACKAGE / under).rglob("*.py"))
            if exempt is None or exempt not in path.relative_to(PACKAGE).parts
            for name in sorted(_imports(path))
            if name == forbidden or name.startswith(forbidden)]


ABOVE_STORE = ("nbpipe.engine", "nbpipe.query", "nbpipe.ops", "nbpipe.ui", "nbpipe.cli",
               "nbpipe.launch", "nbpipe.warm")


@pytest.mark.parametrize("under, forbidden, exempt", [
    (".", ("httpx",), "backends"),  # the outside world is spoken to in backends/ only
    ("plan", ("nbpipe.store", "nbpipe.backends") + ABOVE_STORE, None),
    ("manifest", ("nbpipe.plan", "nbpipe.store", "nbpipe.backends") + ABOVE_STORE, None),
    ("store", ("nbpipe.backends",) + ABOVE_STORE, None),  # the past knows nothing of doing
    ("backends", ("nbpipe.store",) + ABOVE_STORE, None),
    ("query", ("nbpipe.engine", "nbpipe.ops", "nbpipe.ui", "nbpipe.cli"), None),
    ("ops", ("nbpipe.engine", "nbpipe.ui", "nbpipe.cli"), None),
    ("ui", ("nbpipe.engine", "nbpipe.cli"), None),  # presentation never reaches into the engine
    ("engine", ("nbpipe.query", "nbpipe.ops", "nbpipe.ui", "nbpipe.cli"), None),  # tells by events
    ("cli", ("nbpipe.store",), None),  # the command line opens the store through ops/ and query/
])
def test_imports_point_one_way(under, forbidden, exempt):
    assert _offenders(under, forbidden, exempt) == []


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("def refresh():\n    import httpx\n    return httpx\n")
    assert _imports(sample) == {"httpx"}


def test_networkx_stays_in_the_graph_module():
    offenders = [str(path.relative_to(PACKAGE.parent)) for path in sorted(PACKAGE.rglob("*.py"))
                 if path.name != "graph.py" and any(name.split(".")[0] == "networkx"
                                                    for name in _imports(path))]
    assert offenders == []


MAX_METHODS, MAX_LINES = 15, 200  # DESIGN.md: a class past these has two jobs


def _class_sizes() -> list[tuple[str, int, int]]:
    sizes = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ClassDef):
                methods = sum(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                              for n in node.body)
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                sizes.append((f"{path.relative_to(PACKAGE.parent)}:{node.name}", methods, lines))
    return sizes


def test_no_class_has_two_jobs():
    assert [(name, methods, lines) for name, methods, lines in _class_sizes()
            if methods > MAX_METHODS or lines > MAX_LINES] == []


def _assigned(cls_node: ast.ClassDef) -> set[str]:
    """Names a class's methods assign as `self.NAME`."""
    names: set[str] = set()
    for method in cls_node.body:
        if isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(method):
                targets = node.targets if isinstance(node, ast.Assign) else \
                    [node.target] if isinstance(node, ast.AnnAssign | ast.AugAssign) else []
                names |= {e.attr for t in targets for e in ast.walk(t)
                          if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name)
                          and e.value.id == "self"}
    return names


def _declares(cls: type, name: str) -> bool:
    """Declared on the class or a base: an annotation, a class attribute, a slot, a dataclass
    field; or set by a third-party base's own code (click's, Jinja's), which nbpipe cannot
    annotate."""
    for base in cls.__mro__:
        if name in vars(base).get("__annotations__", {}) or name in vars(base) \
                or name in getattr(base, "__slots__", ()):
            return True
        if not base.__module__.startswith("nbpipe") and any(
                name in getattr(getattr(member, "__code__", None), "co_names", ())
                for member in vars(base).values()):
            return True
    return False


def test_every_attribute_is_declared():
    """DESIGN.md: every attribute a class sets is declared at class level, so a reader sees a
    class's whole state in one place (and mypy checks its type)."""
    import importlib

    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module_name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        module_name = module_name.removesuffix(".__init__")
        nodes = [n for n in ast.walk(ast.parse(path.read_text("utf-8")))
                 if isinstance(n, ast.ClassDef)]
        if not nodes:
            continue
        module = importlib.import_module(module_name)
        for node in nodes:
            cls = getattr(module, node.name, None)
            if isinstance(cls, type):  # a class nested in a function is left out
                missing += [f"{module_name}.{node.name}.{name}" for name in
                            sorted(_assigned(node)) if not _declares(cls, name)]
    assert missing == []
