"""Terminal output of `relayd queue`, rendered from the control API's JSON responses."""

from datetime import datetime, timezone

STATE_ORDER = ("queued", "deferred", "delivered", "bounced", "expired")


def age(seconds: float) -> str:
    """Format a duration for a person: 42s, 3m12s, 2h03m, 2d04h."""
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def size(octets: int) -> str:
    if octets < 1000:
        return f"{octets} B"
    if octets < 1_000_000:
        return f"{octets / 1000:.1f} kB"
    return f"{octets / 1_000_000:.1f} MB"


def _next_attempt(recipient: dict, now: float) -> str:
    due = recipient.get("next_attempt")
    if recipient["state"] not in ("queued", "deferred"):
        return ""
    if due is None or due <= now:
        return "next attempt now"
    return f"next attempt in {age(due - now)}"


def _recipient_line(recipient: dict, now: float) -> str:
    parts = [f"  {recipient['state']:<9} {recipient['address']}"]
    if recipient["attempts"]:
        parts.append(f"attempts {recipient['attempts']}")
    next_attempt = _next_attempt(recipient, now)
    if next_attempt:
        parts.append(next_attempt)
    line = "  ".join(parts)
    if recipient["last_reply"]:
        host = f" from {recipient['last_host']}" if recipient.get("last_host") else ""
        line += f"\n              last reply{host}: {recipient['last_reply']}"
    return line


def listing(response: dict, now: float, filtered: bool) -> str:
    messages = response["messages"]
    if not messages:
        return "No message matches." if filtered else "The queue is empty."
    lines = [f"{'QUEUE ID':<20} {'AGE':>7} {'SIZE':>8}  {'CLASS':<13}  SENDER"]
    for message in messages:
        sender = message["sender"] or "<>"
        lines.append(
            f"{message['queue_id']:<20} {age(message['age']):>7} {size(message['size']):>8}  {message['class']:<13}  {sender}"
        )
        lines.extend(_recipient_line(r, now) for r in message["recipients"])
    total = response["total"]
    noun = "message" if total == 1 else "messages"
    shown = f" ({len(messages)} shown)" if len(messages) < total else ""
    lines.append(f"{total} {noun}{shown}")
    return "\n".join(lines)


def message(response: dict, now: float) -> str:
    received = datetime.fromtimestamp(response["received_at"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    flags = [name for name in ("smtputf8", "body_8bit") if response.get(name)]
    lines = [
        f"queue id   {response['queue_id']}",
        f"sender     {response['sender'] or '<>'}",
        f"received   {received} ({age(response['age'])} ago) from {response['client']}",
        f"size       {response['size']} bytes",
        f"class      {response['class']}",
    ]
    if flags:
        lines.append(f"options    {', '.join(flags)}")
    lines.append("recipients")
    for recipient in sorted(response["recipients"], key=lambda r: _state_rank(r["state"])):
        lines.append(_recipient_line(recipient, now))
    return "\n".join(lines)


def _state_rank(state: str) -> int:
    return STATE_ORDER.index(state) if state in STATE_ORDER else len(STATE_ORDER)


def stats(response: dict) -> str:
    recipients = response["recipients"]
    lines = [
        f"messages     {response['messages']}",
        f"recipients   queued {recipients['queued']}, deferred {recipients['deferred']}",
        f"oldest       {age(response['oldest_age']) if response['messages'] else '-'}",
        f"scheduled    {response['scheduled']} (message, domain) jobs",
    ]
    if response["classes"]:
        lines.append("")
        lines.append(f"{'CLASS':<14} {'MESSAGES':>8} {'QUEUED':>7} {'DEFERRED':>8}  OLDEST")
        for name, counts in sorted(response["classes"].items()):
            oldest = age(counts["oldest_age"]) if counts["messages"] else "-"
            lines.append(f"{name:<14} {counts['messages']:>8} {counts['queued']:>7} {counts['deferred']:>8}  {oldest}")
    return "\n".join(lines)


def retried(response: dict) -> str:
    messages, domains = response["messages"], response["domains"]
    if not domains:
        if response.get("queue_id"):
            return f"Nothing to retry: {response['queue_id']} has no deferred recipient waiting for a later attempt."
        return "Nothing to retry: no deferred recipient is waiting for a later attempt."
    lines = [f"Retrying now: {messages} {'message' if messages == 1 else 'messages'} to {domains} {'domain' if domains == 1 else 'domains'}."]
    for entry in response.get("paused", []):
        until = datetime.fromtimestamp(entry["until"], timezone.utc).strftime("%H:%M:%S UTC")
        lines.append(
            f"{entry['domain']} is paused after repeated connection failures: its recipients wait until {until}."
        )
    return "\n".join(lines)


def deleted(response: dict) -> str:
    pending = response["recipients"]
    if not pending:
        return f"Deleted {response['queue_id']}; it had no pending recipient."
    return f"Deleted {response['queue_id']}; never sent to: {', '.join(pending)}"
