"""The declared dependencies cover what the code needs, and setup installs exactly them.

Each import of a third-party module in adakd/, analysis/ and app/ must map (through the installed
distributions' metadata) to a dependency pyproject.toml declares, and every declared runtime
dependency must be pinned in requirements.txt, which scripts/setup.sh installs. A dependency that is
present on the developer's machine but declared nowhere passes every other test there and fails on a
fresh machine (pydantic was imported but undeclared; accelerate, which transformers needs to load the
teacher's GGUF, was dropped from both files and only a fresh CI machine noticed).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"adakd", "analysis", "app"}


def _name(requirement: str) -> str:
    """Normalised distribution name of a requirement line (PEP 503: lower case, '-' for '_' and '.')."""
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0]).lower()


def _declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {_name(r) for r in project["dependencies"]}


def _pinned() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert "==" in line, f"requirements.txt pins exact versions: {line!r}"
            pins[_name(line)] = line.split("==", 1)[1].strip()
    return pins


def _imported_top_level_modules() -> dict[str, str]:
    """{top-level module: a file importing it} over the packages' sources (absolute imports only)."""
    found: dict[str, str] = {}
    for package in sorted(FIRST_PARTY):
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(REPO)))
    return found


def test_every_third_party_import_is_a_declared_dependency():
    declared = _declared()
    distributions = importlib.metadata.packages_distributions()
    undeclared = []
    for module, where in sorted(_imported_top_level_modules().items()):
        if module in FIRST_PARTY or module in sys.stdlib_module_names:
            continue
        owners = {_name(d) for d in distributions.get(module, [])}
        assert owners, f"{module} (imported in {where}) belongs to no installed distribution"
        if not owners & declared:
            undeclared.append(f"{module} ({where}; distribution {', '.join(sorted(owners))})")
    assert not undeclared, "imported but not in pyproject.toml's dependencies: " + "; ".join(undeclared)


def test_every_declared_dependency_is_pinned_and_installed_at_its_pin():
    pins = _pinned()
    missing = sorted(_declared() - pins.keys())
    assert not missing, f"in pyproject.toml but not pinned in requirements.txt: {missing}"
    for name in sorted(_declared()):
        installed = importlib.metadata.version(name)
        # torch's CUDA and CPU builds carry a local version label (2.13.0+cpu) on the same pin
        pinned = pins[name]
        assert installed.split("+")[0] == pinned, f"{name}: installed {installed}, requirements.txt pins {pinned}"


def test_the_teacher_conversion_can_load_a_gguf():
    """transformers refuses a GGUF without accelerate, which nothing imports directly."""
    from transformers.utils import is_accelerate_available, is_gguf_available

    assert "accelerate" in _declared()
    assert is_accelerate_available() and is_gguf_available()
