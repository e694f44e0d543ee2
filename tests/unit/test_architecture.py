"""The engine's shape: it never imports streamlit, its packages import only downwards
(data <- engine <- runs <- explore, labs <- the API and the CLI), and no module imports
itself back through a cycle."""
import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PKG = ROOT / "vae_core"


# A package may import packages of a lower rank and its own; never a higher one.
RANK = {"progress": 0, "data": 0, "engine": 1, "runs": 2, "explore": 3, "labs": 4, "notebook": 4, "api": 5, "cli": 5,
        "launch": 5, "__main__": 6, "__init__": 6}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """Every vae_core module that ``path`` imports, at any depth of the file (lazy imports count)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            if t in known:
                out.add(t)
    return out - {name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imported_modules(path, name, set(mods)) for name, path in mods.items()}


def layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_importing_every_engine_module_imports_no_streamlit():
    names = sorted(n for n in modules() if not n.endswith("__main__"))
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({n!r})\n" for n in names) + \
        "print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def upward_imports(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in g.items():
        for dep in deps:
            if dep == "vae_core":
                continue
            if RANK[layer(dep)] > RANK[layer(mod)] or (RANK[layer(dep)] == RANK[layer(mod)] and layer(dep) != layer(mod)):
                bad.append(f"{mod} imports {dep}")
    return sorted(bad)


def test_packages_import_only_downwards():
    bad = upward_imports(graph())
    assert not bad, "imports that point up or sideways:\n" + "\n".join(bad)


def test_no_import_cycles():
    g = graph()
    # The package __init__ files only re-export their own modules; a cycle through them is not real.
    g = {k: {d for d in v if not (k.startswith(d + "."))} for k, v in g.items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checks_see_a_planted_upward_import(tmp_path):
    """A lazy, relative import from the trainer up into explore is found and reported."""
    src = tmp_path / "trainer.py"
    src.write_text("def f():\n    from ..explore import codes\n    from ..engine.config import RunConfig\n")
    known = set(modules())
    deps = imported_modules(src, "vae_core.runs.trainer", known)
    assert {"vae_core.explore.codes", "vae_core.engine.config"} <= deps
    assert "vae_core.runs.trainer imports vae_core.explore.codes" in upward_imports({"vae_core.runs.trainer": deps})
