"""Fixtures shared by every test folder: a throwaway PostgreSQL cluster (`pgcluster.py`),
started once per session on demand and stopped at the end."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pgcluster import PostgresCluster  # noqa: E402


@pytest.fixture(scope="session")
def postgres_cluster(tmp_path_factory):
    cluster = PostgresCluster(tmp_path_factory.mktemp("postgres")).init().start()
    yield cluster
    cluster.destroy()
