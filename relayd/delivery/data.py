"""The DATA phase on an aiosmtplib session, sending the spooled content as it is stored.

aiosmtplib's data() rewrites every line ending and dot-stuffs with regular
expressions on each send, which for a 50 KB message cost more of the event
loop than the rest of the attempt. Spooled content already has CRLF line
endings, because the listener refuses bare CR and LF. So only the
dot-stuffing is left to do, with one bytes.replace. Content that is not
all CRLF, such as a message relayd wrote itself, is normalized first.
"""

import re

import aiosmtplib

_LINE_ENDING = re.compile(rb"\r\n|\r|\n")


def encode_data(content: bytes) -> bytes:
    """Return `content` as the mail data of RFC 5321 4.1.1.4: CRLF lines, dot-stuffed (4.5.2), then the final dot."""
    crlf = content.count(b"\r\n")
    if content.count(b"\n") != crlf or content.count(b"\r") != crlf:
        content = _LINE_ENDING.sub(b"\r\n", content)
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    stuffed = content.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n"


async def send_data(client: aiosmtplib.SMTP, content: bytes, timeout: float) -> aiosmtplib.SMTPResponse:
    """Send DATA, then the content after a 354 reply; return the reply that ends the exchange.

    A rejection of DATA itself is returned as it is, and the content is not sent.
    """
    response = await client.execute_command(b"DATA", timeout=timeout)
    if response.code != 354:
        return response
    protocol = client.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost before the message content was sent")
    # The session belongs to this attempt alone, so no other command can
    # interleave between the write and the read of its reply.
    protocol.write(encode_data(content))
    return await protocol.read_response(timeout=timeout)
