"""The architecture as imports: no cycles, bpcore stands alone, the packages of experiments/
import one way (``experiments/__init__.py`` draws the picture).  A scan of every import
statement in the source, including those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bpcore", "experiments")
# subpackage of experiments → the subpackages it may import
LAYERS = {
    "app": {"comparison", "diagnostics", "tracking"},
    "figures": {"comparison", "diagnostics", "tracking"},
    "server": {"diagnostics", "tracking"},
    "comparison": set(),
    "diagnostics": set(),
    "tracking": set(),
}
SHIMS = {"experiments.train": "app", "experiments.plots": "figures"}  # the user commands
NOT_IN_BPCORE = ("experiments", "hydra", "omegaconf", "mlflow", "matplotlib", "seaborn")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
}


def imports(name: str) -> set[str]:
    """Every module ``name`` imports (``from a import b`` counts ``a.b`` when it is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names} & set(MODULES)
    return found


def ours(name: str) -> set[str]:
    return {m for m in imports(name) if m in MODULES and m != name}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` (module → modules it imports) as a path back to its start, or None."""
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = "open"
        for other in sorted(graph.get(name, ())):
            if state.get(other) == "open":
                return [*path[path.index(other) :], other]
            if other not in state and (found := visit(other, [*path, other])):
                return found
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state and (found := visit(name, [name])):
            return found
    return None


def test_the_scan_sees_every_module_and_its_imports() -> None:
    assert {"bpcore.mlp", "experiments.app.train", "experiments.tracking.writer"} <= set(MODULES)
    assert "experiments.tracking.store" in ours("experiments.tracking.run")
    assert "experiments.diagnostics.history" in ours("experiments.diagnostics.recorder")


def test_the_cycle_search_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert cycle(graph) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles() -> None:
    found = cycle({name: ours(name) for name in MODULES})
    assert found is None, " → ".join(found or [])


def test_bpcore_needs_only_numpy_and_scipy() -> None:
    for name in (m for m in MODULES if m.split(".")[0] == "bpcore"):
        bad = {m for m in imports(name) if m.split(".")[0] in NOT_IN_BPCORE}
        assert not bad, f"{name} imports {sorted(bad)}"


def test_the_packages_of_experiments_import_one_way() -> None:
    for name in (m for m in MODULES if m.startswith("experiments.")):
        layer = SHIMS.get(name) or name.split(".")[1]
        allowed = LAYERS.get(layer, set()) | {layer}
        for other in ours(name):
            if other.startswith("experiments.") and other not in SHIMS:
                assert other.split(".")[1] in allowed, f"{name} imports {other}"
