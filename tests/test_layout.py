"""The package's shape: subpackages in layers, each importing only from itself and the layers below it
(so there is no import circle), and the README's file tree naming every module there is."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "r3kit"
# Lowest first. A module may import from its own subpackage and from any subpackage listed before it.
LAYERS = ["infra", "tasks", "data", "models", "core", "eval", "student", "report", "runs", ""]


def layer_of(module: str) -> int:
    parts = module.split(".")
    sub = parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else ""
    return LAYERS.index(sub)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, int]]:
    """Every r3kit module `path` imports (at any depth: inside functions too), with the line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("r3kit"):
            found += [(f"{node.module}.{a.name}" if (PACKAGE.parent / f"{node.module}.{a.name}".replace(".", "/")).exists()
                       or (PACKAGE.parent / (f"{node.module}.{a.name}".replace(".", "/") + ".py")).exists()
                       else node.module, node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("r3kit")]
    return found


def test_every_subpackage_imports_only_from_the_layers_below_it():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = module_name(path)
        for target, line in imports(path):
            if target == "r3kit":  # the lazy public API: only the top level and user-facing examples use it
                assert layer_of(here) == len(LAYERS) - 1, f"{here}:{line} imports the top-level r3kit API"
                continue
            if layer_of(target) > layer_of(here):
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_the_layer_list_names_every_subpackage():
    subpackages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert subpackages == sorted(name for name in LAYERS if name)


def test_the_readme_file_tree_names_every_module():
    readme = (ROOT / "README.md").read_text()
    tree = readme[readme.index("## Layout"):]
    tree = tree[: tree.index("\n## ", 4)]
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.name == "__init__.py" and rel.parent != Path("."):
            continue  # a subpackage is named by its folder
        if "harness_tasks" in rel.parts and rel.name != "__init__.py":
            continue  # named as a folder: lm-eval's task files
        if not re.search(rf"\b{re.escape(rel.name)}", tree):
            missing.append(str(rel))
    for folder in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").exists()):
        if f"{folder.name}/" not in tree:
            missing.append(f"{folder.name}/")
    assert not missing, f"the README's Layout section does not name: {missing}"
