"""The package's layout rules, checked on its source: no import cycles (module-level or inside
functions), no arrow from a lower floor to a higher one, no sys.path edits, no module far past
~400 lines. Data flows one way: config -> data -> model -> engine -> result -> tracking -> summary;
the sweep and the studies sit on top of run + tracking (docs/architecture.md). The README's map
names only paths that exist."""

from __future__ import annotations

import ast
from pathlib import Path

from nanbench.config import ROOT

# lowest first; a module may import only from its own floor or lower ones
FLOORS = ["nanbench.vocab", "nanbench.config", "nanbench.validate", "nanbench.user_data", "nanbench.user_model", "nanbench.user_loss",
          "nanbench.dataspec", "nanbench.spec", "nanbench.forensics",
          "nanbench.data", "nanbench.losses", "nanbench.model", "nanbench.step", "nanbench.locate", "nanbench.engines", "nanbench.result",
          "nanbench.run", "nanbench.tracking", "nanbench.summary", "nanbench.cluster", "nanbench.sweep",
          "hydra_plugins", "nanbench.studies", "nanbench.cli", "nanbench.diagnose", "nanbench.__main__", "tools"]


def modules() -> dict[str, Path]:
    found = {}
    for path in [*ROOT.glob("nanbench/**/*.py"), *ROOT.glob("hydra_plugins/**/*.py"), *ROOT.glob("tools/*.py")]:
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                out.add(name if name in known else node.module)
        elif isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
    return {name for name in out if name in known}


def floor(name: str) -> int:
    return max(i for i, f in enumerate(FLOORS) if name == f or name.startswith(f + "."))


def test_no_import_cycles_anywhere():
    known = modules()
    graph = {m: imports(p, known) - {m} for m, p in known.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in graph[m]:
            assert state.get(d) != 1, "import cycle: " + " -> ".join(path[path.index(d):] + [d]) \
                if d in path else f"import cycle through {m} -> {d}"
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_no_arrow_from_a_lower_floor_to_a_higher_one():
    known = modules()
    upward = [f"{m} -> {d}" for m, p in known.items() for d in imports(p, known)
              if floor(d) > floor(m) and not d.startswith(m + ".")]
    assert not upward, upward


def test_no_sys_path_edits_and_no_giant_modules():
    edits = ("sys.path." + "insert", "sys.path." + "append")  # spelt apart: this file is checked too
    for path in [*modules().values(), *ROOT.glob("tests/**/*.py")]:
        text = path.read_text()
        assert not any(edit in text for edit in edits), path
    sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in modules().values()}
    assert max(sizes.values()) <= 450, max(sizes, key=sizes.get)


def test_the_readme_map_names_only_paths_that_exist():
    import re

    text = (ROOT / "README.md").read_text()
    rows = [line for line in text[text.index("## Map"):].splitlines()[3:] if line.startswith("| `")]
    assert len(rows) >= 8
    missing = []
    for row in rows:
        cell = row.split("|")[1]
        names = re.findall(r"`([^`]+)`", cell)
        folder = ""
        for name in names:
            if "/" in name.rstrip("/"):
                folder = name.rstrip("/").rsplit("/", 1)[0] + "/"
            if not ((ROOT / name).exists() or (ROOT / folder / name).exists()):
                missing.append(name)
    assert not missing, missing
    for doc in re.findall(r"\]\((docs/[^)]+)\)", text):
        assert (ROOT / doc).exists(), doc
