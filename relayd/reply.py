"""SMTP replies as values: the code, the RFC 3463 enhanced status code and the text."""

import re
from dataclasses import dataclass

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")


@dataclass(frozen=True)
class Reply:
    """One SMTP reply; `command` is the command a remote server replied to."""

    code: int
    enhanced: str
    text: str
    command: str = ""

    def __str__(self) -> str:
        if self.enhanced:
            return f"{self.code} {self.enhanced} {self.text}"
        return f"{self.code} {self.text}"

    @property
    def is_positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return 500 <= self.code < 600

    def format(self, **values: object) -> "Reply":
        """Return a copy with `{name}` placeholders in the text filled in."""
        return Reply(self.code, self.enhanced, self.text.format(**values), self.command)

    @classmethod
    def parse(cls, code: int, message: str, command: str = "") -> "Reply":
        """Build a Reply from a remote server's code and (possibly multi-line) text.

        RFC 2034: when the server uses enhanced status codes, each line of the
        text starts with one; the first line's code is the one kept, and the
        other lines are kept whole so logs show the full reply.
        """
        lines = message.splitlines() or [""]
        enhanced = ""
        first, _, rest = lines[0].partition(" ")
        if _ENHANCED.match(first) and first[0] == str(code)[0]:
            enhanced = first
            lines[0] = rest
            lines[1:] = [_strip_enhanced(line, enhanced) for line in lines[1:]]
        return cls(code, enhanced, " / ".join(line for line in lines if line) or "", command)


def _strip_enhanced(line: str, enhanced: str) -> str:
    head, _, rest = line.partition(" ")
    return rest if head == enhanced else line
