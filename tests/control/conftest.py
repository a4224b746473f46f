"""Fixtures for the control service tests: a real `keygate-control serve` on 127.0.0.1 with a
fresh database and the kit's test tokens (keygate_testkit.control). Every test that uses a
service runs on both backends: a SQLite file, and a database of a throwaway PostgreSQL cluster
(tests/conftest.py). Every wait is bounded by a deadline."""

import uuid

import pytest

from keygate_testkit.api import Api
from keygate_testkit.control import ControlService


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request):
    return request.param


@pytest.fixture(scope="session")
def new_service(backend, tmp_path_factory, request):
    """Makes a (not yet started) service on a fresh database of the session's backend."""
    cluster = request.getfixturevalue("postgres_cluster") if backend == "postgres" else None

    def make(extra_env=None):
        directory = tmp_path_factory.mktemp("control")
        database = cluster.new_database() if cluster else directory / "keygate.db"
        # Webhooks may call 127.0.0.1, where the tests' receivers (or nothing) listen: the tests
        # talk only to loopback.
        env = {"KEYGATE_WEBHOOK_ALLOW_PRIVATE": "true", **(extra_env or {})}
        return ControlService(database, directory / "serve.log", extra_env=env, cluster=cluster,
                              start_timeout=15)

    return make


@pytest.fixture(scope="session")
def service(new_service):
    control = new_service().start()
    yield control
    control.stop()


@pytest.fixture
def api(service):
    return Api(service.url())


@pytest.fixture
def fresh_service(new_service):
    """A service of its own, for tests that kill or restart it."""
    control = new_service()
    yield control
    control.stop()


@pytest.fixture
def team():
    """A team name no other test uses, so listings can be filtered to one test's keys."""
    return f"team-{uuid.uuid4().hex[:10]}"
