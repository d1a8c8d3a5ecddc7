"""DMARC records: parsing (RFC 7489 6.3) and policy discovery (RFC 7489 6.6.3)."""

from dataclasses import dataclass
from urllib.parse import urlsplit

from relayd.alignment.domains import RELAXED, STRICT, organizational_domain
from relayd.alignment.taglist import parse_tag_list
from relayd.delivery.dns import Resolver

VERSION = "DMARC1"
POLICIES = ("none", "quarantine", "reject")
ALIGNMENT_MODES = (RELAXED, STRICT)


class InvalidRecord(Exception):
    """A DMARC record that receivers ignore, so no DMARC policy applies (RFC 7489 6.6.3 step 6)."""


@dataclass(frozen=True)
class DmarcRecord:
    """One parsed DMARC record; a missing or invalid optional tag has its RFC 7489 6.3 default."""

    policy: str
    # None when sp= is absent, so subdomains get `policy`.
    subdomain_policy: str | None = None
    adkim: str = RELAXED
    aspf: str = RELAXED
    percent: int = 100
    report_uris: tuple[str, ...] = ()
    # Syntax errors that receivers ignore (RFC 7489 6.3), shown by check-domain.
    problems: tuple[str, ...] = ()


def is_dmarc_record(text: str) -> bool:
    """Return whether `text` starts with the tag v=DMARC1 (RFC 7489 6.6.3 step 2).

    RFC 7489 6.4 spells "DMARC1" with case-sensitive %x codes, while the
    tag name "v" is case-insensitive and may have white space around "=".
    """
    name, equals, value = text.split(";", 1)[0].partition("=")
    return bool(equals) and name.strip().lower() == "v" and value.strip() == VERSION


def parse_record(text: str) -> DmarcRecord:
    """Parse the DMARC record `text`; raise InvalidRecord when receivers would ignore it."""
    if not is_dmarc_record(text):
        raise InvalidRecord(f'the record does not start with "v={VERSION}"')
    tags, errors = parse_tag_list(text)
    # RFC 7489 6.4 writes tag names and keywords as ABNF strings, which are case-insensitive.
    values = {name.lower(): value for name, value in tags.items()}
    problems = list(errors)
    report_uris = _report_uris(values.get("rua", ""))

    policy = values.get("p", "").lower()
    subdomain_policy = values["sp"].lower() if "sp" in values else None
    if policy not in POLICIES or subdomain_policy not in (None, *POLICIES):
        bad = "p" if policy not in POLICIES else "sp"
        # RFC 7489 6.6.3 step 6: a record with a valid rua= URI is read as p=none.
        if not report_uris:
            raise InvalidRecord(f"{bad}= is missing or invalid, and there is no valid rua= address")
        problems.append(f"{bad}= is missing or invalid, so receivers read the record as p=none")
        policy, subdomain_policy = "none", None

    return DmarcRecord(
        policy=policy,
        subdomain_policy=subdomain_policy,
        adkim=_mode(values, "adkim", problems),
        aspf=_mode(values, "aspf", problems),
        percent=_percent(values, problems),
        report_uris=report_uris,
        problems=tuple(problems),
    )


def _mode(values: dict[str, str], name: str, problems: list[str]) -> str:
    mode = values.get(name, RELAXED).lower()
    if mode in ALIGNMENT_MODES:
        return mode
    problems.append(f'{name}={values[name]} is invalid, so receivers use the default "r"')
    return RELAXED


def _percent(values: dict[str, str], problems: list[str]) -> int:
    text = values.get("pct", "100")
    if text.isascii() and text.isdigit() and int(text) <= 100:
        return int(text)
    problems.append(f"pct={text} is invalid, so receivers use the default 100")
    return 100


def _report_uris(text: str) -> tuple[str, ...]:
    """Return the syntactically valid URIs of rua= (RFC 7489 6.4: URI with an optional "!size")."""
    found = []
    for item in text.split(","):
        uri = item.strip().split("!", 1)[0]
        parts = urlsplit(uri)
        if parts.scheme and (parts.netloc or parts.path):
            found.append(uri)
    return tuple(found)


@dataclass(frozen=True)
class DmarcLookup:
    """The outcome of DMARC policy discovery for one From domain."""

    domain: str
    record: DmarcRecord | None
    # The name whose TXT record was used or found unusable, such as _dmarc.example.com.
    found_at: str | None = None
    text: str = ""
    # Why no policy applies, when `record` is None.
    problem: str = ""

    @property
    def adkim(self) -> str:
        return self.record.adkim if self.record else RELAXED

    @property
    def aspf(self) -> str:
        return self.record.aspf if self.record else RELAXED

    @property
    def applied_policy(self) -> str | None:
        """Return the policy for mail from `domain`: sp= when the record is the organizational domain's."""
        if self.record is None:
            return None
        inherited = self.found_at != f"_dmarc.{self.domain}"
        if inherited and self.record.subdomain_policy:
            return self.record.subdomain_policy
        return self.record.policy


async def discover(resolver: Resolver, domain: str) -> DmarcLookup:
    """Find the DMARC record for mail from `domain` (RFC 7489 6.6.3).

    The From domain's own record comes first, then the organizational
    domain's when the From domain has none. Several DMARC records at one
    name, or an invalid one, mean no policy applies. DNS failures raise
    TemporaryFailure.
    """
    names = [f"_dmarc.{domain}"]
    organizational = organizational_domain(domain)
    if organizational != domain:
        names.append(f"_dmarc.{organizational}")

    for name in names:
        records = [text for text in await resolver.txt(name) if is_dmarc_record(text)]
        if not records:
            continue
        if len(records) > 1:
            return DmarcLookup(domain, None, name, problem=f"{name} has {len(records)} DMARC records, so receivers apply none")
        try:
            return DmarcLookup(domain, parse_record(records[0]), name, records[0])
        except InvalidRecord as exc:
            return DmarcLookup(domain, None, name, records[0], problem=f"the DMARC record at {name} is invalid: {exc}")
    return DmarcLookup(domain, None, problem=f"no DMARC record at {' or '.join(names)}")
