"""Fixtures shared by the end-to-end tests."""
import pytest

from keygate_testkit.console import Browser
from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.ports import free_port
from keygate_testkit.snapshot_server import SnapshotServer
from keygate_testkit.upstream import Upstream


@pytest.fixture(scope="session")
def exported_control_metrics():
    """The keygate_control_* series a running control service exports, by name (the alert rules'
    `keygate-control` group reads them)."""
    import requests

    from keygate_testkit.control import ControlService

    control = ControlService().start()
    try:
        text = requests.get(control.url("/metrics"), timeout=10).text
        yield frozenset(line.split("{")[0].split()[0] for line in text.splitlines()
                        if line.startswith("keygate_control_"))
    finally:
        control.stop()


@pytest.fixture(scope="module")
def upstream():
    """The demo upstream (JSON echo), one per test module."""
    server = Upstream()
    yield server
    server.close()


@pytest.fixture(scope="session")
def exported_keygate_metrics():
    """The keygate_* series a running Envoy with the filter exports, by name. Read once per test
    run: docs/operations.md, the Grafana dashboard and the alert rules are checked against it."""
    snapshots = SnapshotServer()
    envoy = Envoy(free_port(), snapshots.port, plugin_config())
    try:
        yield frozenset(name.split("{")[0] for name in envoy.stats() if name.startswith("keygate_"))
    finally:
        envoy.close()
        snapshots.close()


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module (the console's browser tests)."""
    chromium = Browser()
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (no storage) and page per test."""
    opened = browser.new_page()
    yield opened
    opened.context.close()
