"""The package's layers: every module imports only from its own layer or the layers to its left.

    config, files -> optim -> problems -> plots -> engine -> techniques -> study -> teaching

The check parses every module of ``course_lib`` (imports inside functions included) and
resolves relative imports, so a lazy import that runs against the order fails too.
"""

import ast
from pathlib import Path

import pytest

import course_lib

PACKAGE = Path(course_lib.__file__).resolve().parent


def layer_of(module: str) -> int:
    """Index in ``course_lib.LAYERS`` of a dotted module name inside course_lib."""
    parts = module.split(".")
    assert parts[0] == "course_lib", module
    if len(parts) == 1:
        return len(course_lib.LAYERS)  # the package itself sits above every layer
    for i, layer in enumerate(course_lib.LAYERS):
        if parts[1] in layer:
            return i
    raise AssertionError(f"{module}: {parts[1]!r} is in no layer of course_lib.LAYERS")


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import of a course_lib module in the file at ``path``."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == root.name]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != root.name:
                continue
            if node.module is None or target.count(".") == 0:  # `from . import a, b` / `from course_lib import a`
                found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, target))
    return found


def violations(root: Path, layer=layer_of) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        source_layer = layer(module_name(path, root))
        for line, target in imported_modules(path, root):
            if target.count(".") >= 1 and target.split(".")[1] == "__version__":
                continue
            if layer(target) > source_layer:
                out.append(f"{path.relative_to(root.parent)}:{line} imports {target} (layer "
                           f"{layer(target)} > {source_layer})")
    return out


def test_every_import_follows_the_layer_order():
    assert violations(PACKAGE) == []


def test_every_top_level_module_is_in_a_layer():
    names = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    layered = {name for layer in course_lib.LAYERS for name in layer}
    assert names == layered


def test_the_check_finds_an_upward_import(tmp_path):
    root = tmp_path / "course_lib"
    (root / "optim").mkdir(parents=True)
    (root / "engine").mkdir()
    (root / "__init__.py").write_text("")
    (root / "optim" / "__init__.py").write_text("from . import rules\n")
    (root / "optim" / "rules.py").write_text("def f():\n    from ..engine import loop  # lazy, still upward\n")
    (root / "engine" / "__init__.py").write_text("")
    (root / "engine" / "loop.py").write_text("from course_lib.optim import rules\nfrom ..optim.rules import f\n")
    found = violations(root)
    assert len(found) == 1 and "optim/rules.py:2 imports course_lib.engine " in found[0]


@pytest.mark.parametrize("module", ["course_lib.config", "course_lib.optim.rules", "course_lib.teaching.show"])
def test_layer_of_known_modules(module):
    assert layer_of(module) == {"config": 0, "optim": 1, "teaching": 7}[module.split(".")[1]]
