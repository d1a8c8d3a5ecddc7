"""The tag=value list of DKIM key records (RFC 6376 3.2), which DMARC records reuse (RFC 7489 6.3)."""

import re

# RFC 6376 3.2: tag-name = ALPHA *ALNUMPUNC, where ALNUMPUNC is a letter, digit or "_".
_TAG_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# RFC 6376 3.2: tag-value characters are VCHAR except ";", with white space inside.
_TAG_VALUE = re.compile(r"^[\x21-\x3a\x3c-\x7e]*([ \t\r\n]+[\x21-\x3a\x3c-\x7e]+)*$")


def parse_tag_list(text: str) -> tuple[dict[str, str], list[str]]:
    """Split `text` into tags, and return them with a list of syntax errors.

    Tag names keep their case, which RFC 6376 3.2 makes significant. An entry
    with a syntax error is left out, and a repeated tag keeps its first value. RFC 6376 makes both errors invalidate a
    key record, while RFC 7489 6.3 has a DMARC reader ignore them, so the
    caller decides what an error means.
    """
    tags: dict[str, str] = {}
    errors: list[str] = []
    for entry in text.split(";"):
        if not entry.strip():
            continue
        name, equals, value = entry.partition("=")
        name = name.strip()
        value = value.strip()
        if not equals or not _TAG_NAME.match(name):
            errors.append(f"invalid tag {entry.strip()!r}: expected name=value")
        elif not _TAG_VALUE.match(value):
            errors.append(f"invalid value in tag {name}={value!r}")
        elif name in tags:
            errors.append(f"tag {name} appears more than once")
        else:
            tags[name] = value
    return tags, errors
