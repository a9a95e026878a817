"""The house rules of the experiment layer (issue 28): small modules and no import circle."""

import ast
from pathlib import Path

EXPERIMENT = Path(__file__).resolve().parents[1] / "cryomonai" / "experiment"


def _imports(path: Path) -> set[str]:
    """The ``cryomonai.experiment`` modules ``path`` imports (anywhere in the file, function-local too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cryomonai.experiment."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.ImportFrom) and node.module == "cryomonai.experiment":
            found.update(a.name for a in node.names if (EXPERIMENT / f"{a.name}.py").is_file())
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[2] for a in node.names if a.name.startswith("cryomonai.experiment."))
    return found - {path.stem}


def test_no_experiment_module_is_over_300_lines():
    long = {p.name: n for p in EXPERIMENT.glob("*.py") if (n := len(p.read_text().splitlines())) > 300}
    assert not long, f"split these modules by responsibility: {long}"


def test_the_experiment_modules_import_each_other_without_a_circle():
    graph = {p.stem: _imports(p) for p in EXPERIMENT.glob("*.py") if p.stem != "__init__"}
    assert graph["grid"] and graph["scheduler"]  # the parser sees imports at all

    def visit(node: str, path: tuple[str, ...]) -> None:
        for nxt in graph.get(node, ()):
            assert nxt not in path, f"import circle: {' -> '.join((*path, nxt))}"
            visit(nxt, (*path, nxt))

    for start in graph:
        visit(start, (start,))
