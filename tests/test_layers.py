"""The shape of the code: dependencies point one way (campaign → steps, db → workflows → launchers →
orchestrator), function-local imports say why they are local, the results collections are touched by
``db/`` only, and every package ships (pyproject, Dockerfile)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("campaign", "workflows", "db", "launchers", "orchestrator")


def _layer(module: str) -> tuple[int, str]:
    """(rank, name) of a ``firegen.*`` module: a module may import its own layer or lower ranks only;
    ``steps`` and ``db`` share a rank and must not import each other."""
    parts = module.split(".")
    if parts[1] == "workflows" and len(parts) > 2 and parts[2] == "steps":
        return 1, "steps"
    return {"campaign": (0, "campaign"), "db": (1, "db"), "workflows": (2, "workflows"),
            "launchers": (3, "launchers"), "orchestrator": (4, "orchestrator")}[parts[1]]


def _modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = "firegen." + ".".join(path.relative_to(ROOT).with_suffix("").parts)
            yield name.removesuffix(".__init__"), path


def _imports(tree: ast.Module, module: str, package: bool = False):
    """(line, imported module, function-local?) for every firegen import of a module (``package``: it is
    a package's ``__init__``)."""
    top = {id(n) for n in tree.body}
    for node in tree.body:  # imports under a top-level if/try are top-level too
        if isinstance(node, (ast.If, ast.Try)):
            top.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                parts = module.split(".") + ([""] if package else [])
                base = parts[: -node.level]
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("firegen."):
                yield node.lineno, name, id(node) not in top


def test_dependencies_point_one_way():
    backwards = []
    for module, path in _modules():
        (rank, layer) = _layer(module)
        for line, imported, _ in _imports(ast.parse(path.read_text()), module, path.name == "__init__.py"):
            (other_rank, other) = _layer(imported)
            if other_rank > rank or (other_rank == rank and other != layer):
                backwards.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {other} ({imported})")
    assert backwards == []


def test_the_checker_sees_a_backwards_import(tmp_path):
    tree = ast.parse("def f():\n    from firegen.orchestrator.cli import main\n")
    (line, imported, local), = _imports(tree, "firegen.campaign.config")
    assert (line, imported, local) == (2, "firegen.orchestrator.cli", True)
    assert _layer(imported)[0] > _layer("firegen.campaign.config")[0]


def test_function_local_imports_say_why():
    """A firegen import inside a function is there for start-up time, and its line says so."""
    silent = []
    for module, path in _modules():
        lines = path.read_text().splitlines()
        for line, imported, local in _imports(ast.parse(path.read_text()), module, path.name == "__init__.py"):
            if local and "#" not in lines[line - 1]:
                silent.append(f"{path.relative_to(ROOT)}:{line}: {lines[line - 1].strip()}")
    assert silent == []


RAW_RESULTS_ACCESS = re.compile(
    r"\.(configurations|iterations|models|datasets|campaigns)\.(find|find_one|update_one|update_many|insert_one|"
    r"insert_many|delete_one|delete_many|aggregate|count_documents|find_one_and_update|replace_one|distinct)\b"
    r"|\bdb\[\"(configurations|iterations|models|datasets|campaigns|dataset_pages|candidate_lists|heldout_predictions)\"\]")


def test_only_db_touches_the_results_collections():
    outside = [f"{path.relative_to(ROOT)}:{k}: {text.strip()}"
               for module, path in _modules() if not module.startswith("firegen.db")
               for k, text in enumerate(path.read_text().splitlines(), 1) if RAW_RESULTS_ACCESS.search(text)]
    assert outside == []
    assert RAW_RESULTS_ACCESS.search('store.configurations.find({"campaign": c})')  # the pattern bites


def test_every_package_is_installed_and_copied_into_the_image():
    packages = {str(p.parent.relative_to(ROOT)).replace("/", ".") for package in PACKAGES
                for p in (ROOT / package).rglob("__init__.py")}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {p.removeprefix("firegen.") for p in pyproject["packages"]} == packages
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert all(f"COPY {package} {package}" in dockerfile for package in PACKAGES)
