"""Fixtures shared by every test folder: a throwaway PostgreSQL cluster (keygate_testkit's
PostgresCluster), started once per session on demand and stopped at the end."""

import pytest

from keygate_testkit.postgres import PostgresCluster


@pytest.fixture(scope="session")
def postgres_cluster(tmp_path_factory):
    cluster = PostgresCluster(tmp_path_factory.mktemp("postgres")).init().start()
    yield cluster
    cluster.destroy()
