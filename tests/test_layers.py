"""The layers of pjrl_agents import one way: cli -> run, search, analysis, trained -> algorithms -> config, numeric.

Read from the source (every import statement, those inside functions too), so a test fails where an
algorithm reaches into the run machinery, whatever it imports at run time.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pjrl_agents"
MODULES = sorted(PACKAGE.rglob("*.py"))

NOT_FROM = {
    # a module under this path ...            # ... imports nothing from these
    "algorithms": ("run", "search", "analysis", "trained", "cli"),
    "config.py": ("algorithms", "run", "search", "analysis", "trained", "cli"),
    "numeric.py": ("algorithms", "run", "search", "analysis", "trained", "cli"),
    "run": ("trained", "analysis", "cli"),
    "analysis": ("run.runner", "search", "trained", "cli"),
    "search": ("trained", "cli"),
    "trained": ("search", "analysis", "cli"),
}


def _imports(path: Path) -> set[str]:
    """Every pjrl_agents module `path` imports, as dotted names below pjrl_agents ("run.runner", "algorithms")."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "pjrl_agents":
                names.update(alias.name for alias in node.names)
            elif node.module.startswith("pjrl_agents."):
                base = node.module.removeprefix("pjrl_agents.")
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name.removeprefix("pjrl_agents.") for a in node.names if a.name.startswith("pjrl_agents."))
    return names


def _layer(path: Path) -> str | None:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if rel.parts[0] in NOT_FROM else None


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_one_way(path):
    layer = _layer(path)
    if layer is None:
        return
    wrong = sorted(name for name in _imports(path)
                   if any(name == banned or name.startswith(banned + ".") for banned in NOT_FROM[layer]))
    assert not wrong, f"{path.relative_to(PACKAGE)} ({layer}) imports {', '.join(wrong)}"


def test_the_check_sees_an_algorithm_reaching_into_the_runner(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from pjrl_agents.run import xla_cpu\n    from pjrl_agents import runner\n")
    assert {"run", "run.xla_cpu", "runner"} <= _imports(bad)
    assert any(name.startswith("run") for name in _imports(bad))
