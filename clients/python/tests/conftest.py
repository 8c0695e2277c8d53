import itertools
from contextlib import ExitStack

import pytest

import cluster as cluster_mod


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    with ExitStack() as stack:
        yield cluster_mod.start(stack, tmp_path_factory.mktemp("cluster"))


_users = itertools.count(1000)


@pytest.fixture
def user_id():
    """A user id no other test uses (one session per user)."""
    return next(_users)
