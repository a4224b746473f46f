"""The control service's layers (docs/architecture.md): which folder of control/src may import
which, and no import circle between its files. Read from the `crate::` paths of the code itself,
test code left out (a test may build what it checks from any layer)."""

import re
from pathlib import Path

from keygate_testkit.paths import ROOT

SRC = ROOT / "control/src"

# api -> app | feed | fleet -> domain <- store; wire (the API's bodies) -> domain; only server
# knows api. Each entry: the layers a layer may import besides itself.
ALLOWED = {
    "domain": set(),
    "store": {"domain"},
    "app": {"domain", "store"},
    "feed": {"domain", "store"},
    "fleet": {"domain", "store"},
    "wire": {"domain"},
    "api": {"app", "feed", "fleet", "wire", "domain"},
    "cli": {"wire", "domain"},
    "server": {"api", "app", "feed", "fleet", "wire", "domain", "store", "cli"},
    "main.rs": {"api", "app", "cli", "domain", "feed", "fleet", "server", "store", "wire"},
}
# The few names a layer takes from one it otherwise may not use, each with its reason.
EXCEPTIONS = {
    # The handle the handlers pass on to app/feed, and its error, answered as 503.
    ("api", "crate::store::Store"),
    ("api", "crate::store::sql::Error"),
    # `seed` writes keys into a local database: an operation the CLI runs itself.
    ("cli", "crate::app::seed"),
    # Where the database is, as `serve --database` and `seed --database` name it.
    ("cli", "crate::store::Location"),
}

PATH = re.compile(r"crate::[a-z_][a-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*")


def production_code(path: Path) -> str:
    """The file without its test module (everything from `#[cfg(test)]` on)."""
    if path.name == "tests.rs":
        return ""
    text = path.read_text()
    return text.split("#[cfg(test)]", 1)[0]


def layer_of(path: Path) -> str:
    relative = path.relative_to(SRC)
    return relative.parts[0] if len(relative.parts) > 1 else relative.name


def imports(path: Path) -> list[str]:
    lines = [line for line in production_code(path).splitlines()
             if not line.lstrip().startswith("//")]
    return PATH.findall("\n".join(lines))


def resolve(crate_path: str) -> Path | None:
    """The file a `crate::a::b::C` path names: the longest prefix that is a module file."""
    parts = crate_path.split("::")[1:]
    for end in range(len(parts), 0, -1):
        base = SRC.joinpath(*parts[:end])
        for candidate in (base.with_suffix(".rs"), base / "mod.rs"):
            if candidate.is_file():
                return candidate
    return None


def rust_files() -> list[Path]:
    return sorted(SRC.rglob("*.rs"))


def test_every_layer_imports_only_the_layers_below_it():
    breaches = []
    for path in rust_files():
        layer = layer_of(path)
        allowed = ALLOWED.get(layer)
        assert allowed is not None, f"{path.relative_to(ROOT)}: a folder no layer rule covers"
        for crate_path in imports(path):
            target = crate_path.split("::")[1]
            if target == layer.removesuffix(".rs") or target in allowed:
                continue
            if any(layer == owner and crate_path.startswith(name) for owner, name in EXCEPTIONS):
                continue
            breaches.append(f"{path.relative_to(ROOT)} uses {crate_path}")
    assert not breaches, "imports against the layer rule:\n" + "\n".join(sorted(set(breaches)))


def test_no_import_circle_between_files():
    graph: dict[Path, set[Path]] = {}
    for path in rust_files():
        targets = {resolve(crate_path) for crate_path in imports(path)}
        graph[path] = {target for target in targets if target and target != path}
    # Tarjan's strongly connected components: any component of more than one file is a circle.
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on_stack: set[Path] = set()
    circles: list[list[Path]] = []

    def visit(node: Path) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(component)

    for node in graph:
        if node not in index:
            visit(node)
    assert not circles, "import circles:\n" + "\n".join(
        ", ".join(str(path.relative_to(ROOT)) for path in sorted(circle)) for circle in circles)


def test_the_rule_checker_sees_a_breach():
    """The checks above read real paths: a domain file importing the API would be caught."""
    assert "api" not in ALLOWED["domain"]
    assert resolve("crate::api::state::AppState") == SRC / "api/state.rs"
    assert resolve("crate::store::Store") == SRC / "store/mod.rs"
    assert imports(SRC / "api/state.rs"), "the API's state imports nothing?"


def test_no_rust_file_is_much_over_500_lines():
    long = [f"{path.relative_to(ROOT)}: {len(path.read_text().splitlines())}"
            for root in ("control/src", "contract/src")
            for path in sorted((ROOT / root).rglob("*.rs"))
            if len(path.read_text().splitlines()) > 520]
    assert not long, "files over ~500 lines (move long test tables to tests.rs):\n" + "\n".join(long)
