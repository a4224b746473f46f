"""Fixtures shared by the end-to-end tests."""
import pytest

from harness import Upstream


@pytest.fixture(scope="module")
def upstream():
    """The demo upstream (JSON echo), one per test module."""
    server = Upstream()
    yield server
    server.close()
