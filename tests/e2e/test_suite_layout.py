"""The test folders have no __init__.py, so pytest imports each test module by its basename:
two modules of one name in tests/control and tests/e2e stop the collection of the whole suite
(`make test` collects both). This keeps the names apart."""
from collections import Counter

from harness import ROOT


def test_no_two_test_modules_share_a_name():
    names = Counter(path.name for path in (ROOT / "tests").rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
