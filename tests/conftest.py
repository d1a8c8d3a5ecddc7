"""Fixtures shared by the unit tests."""

import pytest

from relayd.state import SqliteStateStore


@pytest.fixture
def state_store(tmp_path):
    """An open SqliteStateStore in a fresh file under tmp_path."""
    store = SqliteStateStore(tmp_path / "spool" / "state.db")
    store.open()
    yield store
    store.close()
