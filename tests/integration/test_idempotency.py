"""Idempotent submission through the running daemon: one message per key, client and window."""

import threading
import time

MESSAGE = b"Subject: reset\r\nIdempotency-Key: {key}\r\n\r\nYour code is 123456\r\n"


def content(key: str) -> bytes:
    return MESSAGE.replace(b"{key}", key.encode())


def send(relayd, data: bytes, recipient: str = "user@idem.test", source: str = "127.0.0.1") -> str:
    """Submit one message and return the final reply's text."""
    with relayd.smtp(source_address=(source, 0)) as client:
        client.ehlo()
        client.mail("app@sender.test")
        client.rcpt(recipient)
        code, text = client.data(data)
    assert code == 250, text
    return text.decode()


def queue_id_of(reply: str) -> str:
    return reply.rsplit(" ", 1)[1]


def test_same_key_twice_delivered_once(sinks, daemon, webhook_receiver):
    sink = sinks("127.0.0.2")
    receiver = webhook_receiver()
    relayd = daemon(
        {
            "routes": {"idem.test": "127.0.0.2"},
            "webhooks": [{"url": receiver.url, "secret": receiver.secret, "events": ["queued", "duplicate"]}],
        }
    )
    first = send(relayd, content("reset-42"))
    second = send(relayd, content("reset-42"))
    assert first.startswith("2.0.0 Ok: queued as ")
    assert second == f"2.0.0 Ok: duplicate of {queue_id_of(first)}"

    arrived = sink.wait_for(1)
    time.sleep(1.0)
    assert len(sink.messages) == 1
    assert b"Idempotency-Key" not in arrived[0].content
    assert b"idempotency-key" not in arrived[0].content.lower()
    assert arrived[0].content.endswith(b"Subject: reset\r\n\r\nYour code is 123456\r\n")

    duplicate = relayd.wait_for_event("duplicate")[0]
    assert duplicate["queue_id"] == queue_id_of(first)
    assert duplicate["key_kind"] == "idempotency-key"
    receiver.wait_until(lambda r: len(r.unique()) == 2, description="queued and duplicate events")
    types = [r.event["type"] for r in receiver.requests]
    assert types == ["queued", "duplicate"]
    assert all(r.event["data"]["queue_id"] == queue_id_of(first) for r in receiver.requests)


def test_concurrent_same_key_one_message(sinks, daemon):
    sink = sinks("127.0.0.2")
    relayd = daemon({"routes": {"idem.test": "127.0.0.2"}})
    rounds = 5
    replies: dict[int, list[str]] = {n: [] for n in range(rounds)}

    def submit(n: int, barrier: threading.Barrier) -> None:
        with relayd.smtp() as client:
            client.ehlo()
            client.mail("app@sender.test")
            client.rcpt(f"user{n}@idem.test")
            barrier.wait(10)
            code, text = client.data(content(f"concurrent-{n}"))
        replies[n].append(f"{code} {text.decode()}")

    threads = []
    for n in range(rounds):
        barrier = threading.Barrier(2)
        threads += [threading.Thread(target=submit, args=(n, barrier)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    for n, texts in replies.items():
        assert len(texts) == 2
        queued = [t for t in texts if " queued as " in t]
        duplicates = [t for t in texts if " duplicate of " in t]
        assert len(queued) == 1, texts
        assert len(duplicates) == 1, texts
        assert queue_id_of(queued[0]) == queue_id_of(duplicates[0])
    sink.wait_for(rounds)
    time.sleep(1.0)
    assert sorted(m.rcpt_tos[0] for m in sink.messages) == sorted(f"user{n}@idem.test" for n in range(rounds))


def test_key_accepted_again_after_window(sinks, daemon):
    sink = sinks("127.0.0.2")
    relayd = daemon({"routes": {"idem.test": "127.0.0.2"}, "idempotency": {"window": "2s"}})
    first = send(relayd, content("windowed"))
    assert " duplicate of " in send(relayd, content("windowed"))
    time.sleep(2.2)
    again = send(relayd, content("windowed"))
    assert " queued as " in again
    assert queue_id_of(again) != queue_id_of(first)
    assert len(sink.wait_for(2)) == 2


def test_key_scoped_to_client(sinks, daemon):
    sink = sinks("127.0.0.2")
    relayd = daemon({"routes": {"idem.test": "127.0.0.2"}})
    assert " queued as " in send(relayd, content("shared"), source="127.0.0.1")
    assert " queued as " in send(relayd, content("shared"), source="127.0.0.5")
    assert len(sink.wait_for(2)) == 2


def test_message_id_as_key(sinks, daemon):
    sink = sinks("127.0.0.2")
    relayd = daemon({"routes": {"idem.test": "127.0.0.2"}, "idempotency": {"by_message_id": True}})
    message = b"Subject: receipt\r\nMessage-ID: <order-7@app.test>\r\n\r\nThanks\r\n"
    first = send(relayd, message)
    assert send(relayd, message) == f"2.0.0 Ok: duplicate of {queue_id_of(first)}"
    other = send(relayd, message.replace(b"order-7", b"order-8"))
    assert " queued as " in other
    assert len(sink.wait_for(2)) == 2
    assert relayd.events("duplicate")[0]["key_kind"] == "message-id"


def test_message_id_ignored_by_default(sinks, daemon):
    sink = sinks("127.0.0.2")
    relayd = daemon({"routes": {"idem.test": "127.0.0.2"}})
    message = b"Subject: receipt\r\nMessage-ID: <order-9@app.test>\r\n\r\nThanks\r\n"
    assert " queued as " in send(relayd, message)
    assert " queued as " in send(relayd, message)
    assert len(sink.wait_for(2)) == 2
