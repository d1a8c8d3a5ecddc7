"""Standard Webhooks request signatures (symmetric scheme, version "v1").

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`, the MAC is
HMAC-SHA256 keyed with the base64-decoded part of the secret after
"whsec_", and the header carries "v1," and the MAC in base64.
"""

import base64
import hashlib
import hmac

SECRET_PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """Return the HMAC key of a "whsec_..." secret; the config loader has validated its form."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    signed = webhook_id.encode("ascii") + b"." + str(timestamp).encode("ascii") + b"." + body
    mac = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def signed_headers(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Return the headers of one request; the timestamp is the time of the attempt, not of the event."""
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, webhook_id, timestamp, body),
    }
