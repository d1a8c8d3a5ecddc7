"""Idempotent submission: find a message's key and claim it before the message is spooled."""

import asyncio
import time

from relayd.config.model import IdempotencyConfig
from relayd.headers import header_field
from relayd.state import PENDING, IdempotencyKey, IdempotencyStore, Reservation

HEADER = "Idempotency-Key"

# How long a submission waits for another one with the same key to finish
# storing its message. Storing takes milliseconds, so a longer wait means the
# other submission is stuck, and the client gets 451 and retries later.
CLAIM_WAIT = 10.0
CLAIM_POLL_INTERVAL = 0.05


def submission_key(content: bytes, client: str, config: IdempotencyConfig) -> IdempotencyKey | None:
    """Return the key of a submission from `client`, or None when it has none.

    The Idempotency-Key field wins; with `by_message_id` the Message-ID
    field serves when there is no Idempotency-Key.
    """
    value = header_field(content, HEADER)
    if value:
        return IdempotencyKey(client=client, kind="idempotency-key", value=value)
    if config.by_message_id:
        message_id = header_field(content, "message-id")
        if message_id:
            return IdempotencyKey(client=client, kind="message-id", value=message_id)
    return None


async def claim(
    store: IdempotencyStore, key: IdempotencyKey, queue_id: str, window: float, wait: float = CLAIM_WAIT
) -> Reservation:
    """Reserve `key` for `queue_id`, waiting up to `wait` seconds while another submission has it pending.

    Returns RESERVED, COMMITTED (a duplicate) or, when the wait ran out,
    PENDING. Raises StateError when the store fails.
    """
    deadline = time.monotonic() + wait
    while True:
        reservation = await store.reserve_key(key, queue_id, time.time(), window)
        if reservation.status != PENDING or time.monotonic() >= deadline:
            return reservation
        await asyncio.sleep(CLAIM_POLL_INTERVAL)
