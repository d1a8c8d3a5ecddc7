"""Tests for relayd.http: /healthz states, /metrics, and the guards and errors of the queue control API."""

import pytest
from aiohttp.test_utils import TestClient, TestServer

from relayd.delivery.scheduler import Scheduler
from relayd.http.queue_api import is_local_host_header, is_loopback
from relayd.http.server import METRICS_CONTENT_TYPE, Health, create_app
from relayd.spool import Spool


@pytest.fixture
async def spool(tmp_path):
    opened = Spool(tmp_path / "spool")
    opened.open()
    yield opened
    opened.close()


@pytest.fixture
async def served(spool):
    """A test client of the application on 127.0.0.1, and its Health."""
    health = Health()

    async def attempt(queue_id, domain):
        return None

    app = create_app(health, spool, Scheduler(attempt, concurrency=1))
    async with TestClient(TestServer(app)) as client:
        yield client, health


@pytest.mark.parametrize(
    ("state", "status"), [(Health.STARTING, 503), (Health.READY, 200), (Health.DRAINING, 503)]
)
async def test_healthz_follows_state(served, state, status):
    client, health = served
    health.state = state

    response = await client.get("/healthz")

    assert response.status == status
    assert await response.json() == {"status": state}


async def test_metrics_served_as_text_format(served):
    client, _ = served

    response = await client.get("/metrics")

    assert response.status == 200
    assert response.headers["Content-Type"] == METRICS_CONTENT_TYPE
    assert 'relayd_queue_messages{class="transactional"} 0.0' in await response.text()


async def test_control_api_rejects_foreign_host_header(served):
    client, _ = served

    response = await client.get("/v1/queue", headers={"Host": "attacker.example:2580"})

    assert response.status == 403
    assert "Host header" in (await response.json())["error"]


async def test_control_api_needs_json_to_change_queue(served):
    client, _ = served

    plain = await client.post("/v1/queue/retry", data="x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    json_body = await client.post("/v1/queue/retry", json={})

    assert plain.status == 415
    assert json_body.status == 200
    assert await json_body.json() == {"queue_id": None, "messages": 0, "domains": 0, "paused": []}


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/v1/queue?state=bounced", 400, "invalid state 'bounced'"),
        ("/v1/queue?limit=0", 400, "invalid limit"),
        ("/v1/queue?limit=ten", 400, "invalid limit"),
        ("/v1/queue/0123456789ABCDEF012", 404, "no message 0123456789ABCDEF012 in the queue"),
    ],
)
async def test_control_api_errors(served, path, status, error):
    client, _ = served

    response = await client.get(path)

    assert response.status == status
    assert error in (await response.json())["error"]


async def test_control_api_ignores_malformed_queue_id(served):
    client, _ = served

    response = await client.get("/v1/queue/..%2Fspool.db")

    assert response.status == 404


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True), ("192.0.2.1", False), ("", False), (None, False)],
)
def test_is_loopback(address, expected):
    assert is_loopback(address) is expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1:2580", True),
        ("localhost:2580", True),
        ("LOCALHOST", True),
        ("[::1]:2580", True),
        ("::1", True),
        ("relay.example.com:2580", False),
        ("127.0.0.1.nip.example", False),
        ("", False),
    ],
)
def test_is_local_host_header(host, expected):
    assert is_local_host_header(host) is expected
