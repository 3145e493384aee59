"""Suite-wide settings: no test may depend on how fast the machine is."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, settings

from fixtures import postgres

# Hypothesis's defaults time each example (a 200 ms deadline) and each data generation (the
# too_slow health check): both fail on a loaded machine while the code under test is right.
# Property tests here judge behaviour only; settings(...) in a test module inherit this profile.
settings.register_profile(
    "fanmill", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("fanmill")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[postgres.Cluster]:
    """The tests' PostgreSQL cluster: the one `make test` started, else one for this session only."""
    url, base_dir = os.environ.get("FANMILL_TEST_PG"), os.environ.get("FANMILL_TEST_PG_DIR")
    if url and base_dir:
        # fixtures.postgres run owns this cluster and removes it after pytest exits.
        yield postgres.Cluster.attach(url, base_dir)
        return
    # Not under pytest's tmp_path: its base (/tmp/pytest-of-root) is closed to the server's user.
    cluster = postgres.start(tempfile.mkdtemp(prefix="fanmill-pg-"))
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def make_pg_url(pg_cluster: postgres.Cluster) -> Iterator[Callable[[], str]]:
    """A function returning the URL of a new, empty database on each call; all dropped after the test."""
    # A test that stopped the cluster and failed before restarting it must not fail the next ones.
    if not pg_cluster.running():
        pg_cluster.start()
    names: list[str] = []

    def make() -> str:
        names.append(f"t_{uuid.uuid4().hex}")
        return pg_cluster.create_database(names[-1])

    yield make
    if names and pg_cluster.running():
        for name in names:
            pg_cluster.drop_database(name)


@pytest.fixture
def pg_url(make_pg_url: Callable[[], str]) -> str:
    """URL of a fresh, empty database (postgresql://fanmill@/<db>?host=<socket dir>&port=<port>)."""
    return make_pg_url()
