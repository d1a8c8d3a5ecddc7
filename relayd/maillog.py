"""The mail log: one structlog event per message or recipient state change.

Every function here writes one line with fixed fields, so operators can grep
and tests can assert on them. Message content never reaches the log.
"""

import structlog

from relayd import metrics
from relayd.reply import Reply

log = structlog.get_logger("relayd.mail")


def _reply_fields(reply: Reply | None) -> dict:
    if reply is None:
        return {}
    fields = {"reply": str(reply), "status": reply.enhanced}
    if reply.command:
        fields["command"] = reply.command
    return fields


def accepted(
    *,
    queue_id: str,
    sender: str,
    recipients: int,
    size: int,
    client: str,
    dkim: list[str],
    message_id: str,
    message_class: str,
) -> None:
    """Log an accepted message; `dkim` lists the domain/selector pairs that signed it."""
    log.info(
        "accepted",
        queue_id=queue_id,
        message_id=message_id,
        sender=sender,
        recipients=recipients,
        size=size,
        client=client,
        dkim=dkim,
        message_class=message_class,
    )


def duplicate(*, queue_id: str, client: str, recipients: int, key_kind: str) -> None:
    """Log a resubmission that got the queue id of the message it repeats back."""
    log.info("duplicate", queue_id=queue_id, client=client, recipients=recipients, key_kind=key_kind)


def suppressed(*, queue_id: str, recipient: str, reason: str, client: str) -> None:
    """Log a recipient accepted and dropped because it is on the suppression list."""
    log.info("suppressed", queue_id=queue_id, recipient=recipient, reason=reason, client=client)


def suppression_added(*, queue_id: str, recipient: str, reason: str, expires_at: float | None) -> None:
    log.info(
        "suppression_added",
        queue_id=queue_id,
        recipient=recipient,
        reason=reason,
        expires_at=round(expires_at, 3) if expires_at is not None else None,
    )


def rejected(*, reply: Reply, reason: str, client: str, **fields: object) -> None:
    """Log and count a refusal in the inbound dialog; `reason` is the internal detail the client does not see."""
    log.info("rejected", reason=reason, client=client, **_reply_fields(reply), **fields)
    metrics.record_rejected(reply)


def _recipient_event(event: str, *, queue_id: str, recipient: str, domain: str, host: str, attempt: int,
                     reply: Reply | None, delays: dict | None, **fields: object) -> None:
    log.info(
        event,
        queue_id=queue_id,
        recipient=recipient,
        domain=domain,
        host=host,
        attempt=attempt,
        delays=delays or {},
        **_reply_fields(reply),
        **fields,
    )


def delivered(**fields) -> None:
    _recipient_event("delivered", **fields)


def deferred(*, next_attempt: float, **fields) -> None:
    _recipient_event("deferred", next_attempt=round(next_attempt, 3), **fields)


def bounced(**fields) -> None:
    _recipient_event("bounced", **fields)


def expired(**fields) -> None:
    _recipient_event("expired", **fields)


def deleted(*, queue_id: str, sender: str, recipients: list[str]) -> None:
    """Log a message an operator removed from the spool; `recipients` lists those still pending, now never sent."""
    log.info("deleted", queue_id=queue_id, sender=sender, recipients=recipients)
