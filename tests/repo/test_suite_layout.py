"""The test suite's own layout (docs/architecture.md, "Tests"). The test folders have no
__init__.py, so pytest imports each test module by its basename: two modules of one name in
tests/repo, tests/control and tests/e2e stop the collection of the whole suite (`make test`
collects them all). What tests share lives in conftest.py fixtures or in the test kit
(testkit/keygate_testkit), which the venv has installed: a test module never imports another
module of tests/, and nothing edits sys.path. The repository checks here start no part."""
import ast
from collections import Counter

from keygate_testkit.paths import ROOT

# What starts a part, from the kit; the repository checks must not use them.
LAUNCHERS = {"Envoy", "EnvoyProcess", "ControlService", "ConsoleService", "Browser", "PostgresCluster", "Upstream",
             "SnapshotServer", "Program", "validate", "assert_validates", "seed", "run_cli", "keys_cli"}
# Fixtures that start a part (tests/conftest.py, tests/control/conftest.py, tests/e2e/conftest.py).
PART_FIXTURES = {"postgres_cluster", "backend", "new_service", "service", "api", "fresh_service", "upstream",
                 "exported_keygate_metrics"}


def python_files(*folders):
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def imported_modules(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module, [alias.name for alias in node.names]


def test_no_two_test_modules_share_a_name():
    names = Counter(path.name for path in (ROOT / "tests").rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []


def test_no_test_module_imports_a_module_of_the_tests_folder():
    local = {path.stem for path in (ROOT / "tests").rglob("*.py")}
    offenders = []
    for path in python_files("tests"):
        for module, _ in imported_modules(path):
            if module.split(".")[0] in local:
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


def edits_sys_path(node):
    """`sys.path.insert(…)`, `sys.path.append(…)` and the like."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "path"
            and isinstance(node.func.value.value, ast.Name) and node.func.value.value.id == "sys")


def test_nothing_edits_sys_path():
    offenders = [str(path.relative_to(ROOT)) for path in python_files("tests", "bench", "testkit", "scripts")
                 if any(edits_sys_path(node) for node in ast.walk(ast.parse(path.read_text())))]
    assert offenders == []


def test_repository_checks_start_no_part():
    offenders = []
    for path in sorted((ROOT / "tests/repo").glob("test_*.py")):
        for module, names in imported_modules(path):
            if module.startswith("keygate_testkit") and set(names or []) & LAUNCHERS:
                offenders.append(f"{path.name} imports {sorted(set(names) & LAUNCHERS)}")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                used = {arg.arg for arg in node.args.args} & PART_FIXTURES
                if used:
                    offenders.append(f"{path.name}::{node.name} takes {sorted(used)}")
    assert offenders == []
