"""Webhooks: signed HTTP delivery of the events in the outbox."""

from relayd.webhooks.dispatcher import WebhookDispatcher
from relayd.webhooks.transport import HttpTransport, Transport, WebhookError

__all__ = ["HttpTransport", "Transport", "WebhookDispatcher", "WebhookError"]
