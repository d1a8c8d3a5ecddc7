"""`relayd check-domain DOMAIN`: would mail from DOMAIN, sent through this relay, pass DMARC?

The command reads the domain's MX, SPF, DKIM and DMARC records from the
configured name servers and compares them with this relay's keys and
outbound addresses. SPF is evaluated for envelope senders at DOMAIN itself.
"""

import asyncio
import json
import sys
from dataclasses import asdict, dataclass, field

import idna

from relayd.alignment.dmarc import DmarcLookup, discover
from relayd.alignment.domains import is_aligned
from relayd.alignment.keyrecord import key_record_problem
from relayd.alignment.preflight import describe_spf_failure, no_source_addresses, source_addresses
from relayd.alignment.spf import LOOKUP_LIMIT, SpfChecker, SpfResult
from relayd.config import Config
from relayd.delivery.dns import NoData, NotFound, Resolver, TemporaryFailure
from relayd.dkim.keys import SigningKey

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


@dataclass
class MxRecord:
    preference: int
    # "." for a null MX (RFC 7505).
    host: str


@dataclass
class MxReport:
    records: list[MxRecord] = field(default_factory=list)
    problem: str = ""


@dataclass
class SpfReport:
    # The TXT records of the domain that start with "v=spf1" (RFC 7208 4.5).
    records: list[str] = field(default_factory=list)
    # The worst result over this relay's addresses, or "" when none could be evaluated.
    result: str = ""
    results: list[SpfResult] = field(default_factory=list)
    # The maximum look-ups of any one evaluation, against RFC 7208's limit.
    lookups: int = 0
    lookup_limit: int = LOOKUP_LIMIT
    problem: str = ""


@dataclass
class KeyReport:
    selector: str
    domain: str
    algorithm: str
    active: bool
    record_name: str
    published: bool
    # Whether the published record is usable and contains this key's public half.
    matches: bool
    aligned: bool
    problem: str = ""


@dataclass
class DmarcReport:
    found_at: str | None = None
    record: str = ""
    # The policy receivers apply to DOMAIN: sp= when the record is the organizational domain's.
    policy: str | None = None
    p: str | None = None
    sp: str | None = None
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    problem: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class Report:
    domain: str
    mx: MxReport
    spf: SpfReport
    dkim: list[KeyReport]
    dmarc: DmarcReport
    dkim_aligned: bool
    spf_aligned: bool
    passes: bool
    verdict: str


def run(config: Config, keys: list[SigningKey], domain_text: str, *, as_json: bool) -> int:
    """Check `domain_text` against the loaded `keys`, print the report and return the exit status."""
    domain = _ascii_domain(domain_text)
    if domain is None:
        print(f"relayd: invalid domain {domain_text!r}: expected a domain such as example.com", file=sys.stderr)
        return EXIT_USAGE

    report = asyncio.run(inspect(config, domain, configured_keys(keys, domain)))
    print(json.dumps(asdict(report), indent=2) if as_json else render(report))
    return EXIT_PASS if report.passes else EXIT_FAIL


def configured_keys(keys: list[SigningKey], domain: str) -> list[SigningKey]:
    """Return the keys, active or not, of `domain` or else of its nearest parent that has keys.

    The signer picks its domain the same way, among active keys only.
    """
    labels = domain.split(".")
    for start in range(len(labels) - 1):
        candidate = ".".join(labels[start:])
        found = [key for key in keys if key.domain == candidate]
        if found:
            return found
    return []


async def inspect(config: Config, domain: str, keys: list[SigningKey]) -> Report:
    """Look up every record and decide whether mail from `domain` passes DMARC."""
    resolver = Resolver(config.dns)
    spf = SpfChecker(config.dns, helo=config.server.hostname)
    try:
        mx, spf_report, (dmarc, lookup) = await asyncio.gather(
            _mx(resolver, domain), _spf(resolver, spf, config, domain), _dmarc(resolver, domain)
        )
        dkim = await _dkim(resolver, domain, keys, lookup.adkim if lookup else "r")
    finally:
        spf.close()

    dkim_aligned = any(key.active and key.matches and key.aligned for key in dkim)
    # The envelope sender domain is DOMAIN itself, so SPF aligns under either aspf mode.
    spf_aligned = spf_report.result == "pass"
    passes = dmarc.policy is not None and (dkim_aligned or spf_aligned)
    verdict = _verdict(domain, dmarc, dkim, spf_report, dkim_aligned, spf_aligned)
    return Report(domain, mx, spf_report, dkim, dmarc, dkim_aligned, spf_aligned, passes, verdict)


async def _mx(resolver: Resolver, domain: str) -> MxReport:
    try:
        return MxReport([MxRecord(preference, host) for preference, host in sorted(await resolver.mx(domain))])
    except NotFound as exc:
        return MxReport(problem=str(exc))
    except NoData:
        return MxReport(problem=f"{domain} has no MX record, so mail to it goes to its A or AAAA address")
    except TemporaryFailure as exc:
        return MxReport(problem=str(exc))


async def _spf(resolver: Resolver, spf: SpfChecker, config: Config, domain: str) -> SpfReport:
    try:
        records = [text for text in await resolver.txt(domain) if _is_spf_record(text)]
        addresses = await source_addresses(resolver, config.delivery.source_addresses, config.server.hostname)
    except TemporaryFailure as exc:
        return SpfReport(result="temperror", problem=str(exc))
    if not addresses:
        return SpfReport(records, problem=no_source_addresses(config.server.hostname))

    results = await spf.check(addresses, f"postmaster@{domain}")
    failed = [result for result in results if result.result != "pass"]
    problem = describe_spf_failure(domain, failed[0]) if failed else ""
    worst = failed[0].result if failed else "pass"
    return SpfReport(records, worst, results, max(result.lookups for result in results), problem=problem)


def _is_spf_record(text: str) -> bool:
    """RFC 7208 4.5: "v=spf1", case-insensitive, alone or followed by a space."""
    return text[:6].lower() == "v=spf1" and (len(text) == 6 or text[6] == " ")


async def _dmarc(resolver: Resolver, domain: str) -> tuple[DmarcReport, DmarcLookup | None]:
    try:
        lookup = await discover(resolver, domain)
    except TemporaryFailure as exc:
        return DmarcReport(problem=str(exc)), None
    record = lookup.record
    if record is None:
        return DmarcReport(found_at=lookup.found_at, record=lookup.text, problem=lookup.problem), lookup
    report = DmarcReport(
        found_at=lookup.found_at,
        record=lookup.text,
        policy=lookup.applied_policy,
        p=record.policy,
        sp=record.subdomain_policy,
        adkim=record.adkim,
        aspf=record.aspf,
        pct=record.percent,
        warnings=list(record.problems),
    )
    return report, lookup


async def _dkim(resolver: Resolver, domain: str, keys: list[SigningKey], adkim: str) -> list[KeyReport]:
    reports = []
    for key in keys:
        try:
            texts = await resolver.txt(key.record_name)
            problem = key_record_problem(key, texts)
        except TemporaryFailure as exc:
            texts, problem = [], str(exc)
        reports.append(
            KeyReport(
                selector=key.selector,
                domain=key.domain,
                algorithm=key.algorithm,
                active=key.active,
                record_name=key.record_name,
                published=bool(texts),
                matches=bool(texts) and not problem,
                aligned=is_aligned(key.domain, domain, adkim),
                problem=problem,
            )
        )
    return reports


def _verdict(domain: str, dmarc: DmarcReport, dkim: list[KeyReport], spf: SpfReport, dkim_aligned: bool, spf_aligned: bool) -> str:
    """Return the one-line verdict: "pass: ..." or "fail: ..." with every reason."""
    passing = []
    if dkim_aligned:
        selectors = ", ".join(key.selector for key in dkim if key.active and key.matches and key.aligned)
        passing.append(f"DKIM aligned with selector {selectors}")
    if spf_aligned:
        passing.append("SPF aligned and passing")
    if dmarc.policy is not None and passing:
        return f"pass: mail from {domain} passes DMARC ({' and '.join(passing)}); policy {dmarc.policy}"

    reasons = []
    if dmarc.policy is None:
        reasons.append(dmarc.problem)
    if not passing:
        reasons.append(_dkim_reason(domain, dkim, dmarc.adkim))
        reasons.append(spf.problem or f"SPF for {domain} gave {spf.result}")
    return f"fail: mail from {domain} would not pass DMARC: " + "; ".join(reasons)


def _dkim_reason(domain: str, keys: list[KeyReport], adkim: str) -> str:
    active = [key for key in keys if key.active]
    if not keys:
        return f"no DKIM key for {domain} or a parent domain is configured"
    if not active:
        return f"no DKIM key for {domain} is active"
    key = active[0]
    if key.problem:
        return f"DKIM selector {key.selector}: {key.problem}"
    return f"the DKIM key domain {key.domain} is not aligned with {domain} (adkim={adkim})"


def render(report: Report) -> str:
    """Return the report as text for a person."""
    lines = [f"Domain {report.domain}", "", "MX"]
    lines += [f"  {record.preference:<5} {record.host}" for record in report.mx.records]
    if report.mx.problem:
        lines.append(f"  {report.mx.problem}")

    spf = report.spf
    lines += ["", f"SPF, for envelope senders at {report.domain}"]
    lines += [f"  record  {record}" for record in spf.records] or ["  record  none"]
    for result in spf.results:
        lines.append(f"  {result.address}: {result.result} ({result.lookups} of {spf.lookup_limit} DNS look-ups)")
    if spf.problem:
        lines.append(f"  {spf.problem}")

    lines += ["", "DKIM"]
    for key in report.dkim:
        state = "active" if key.active else "inactive"
        found = "published, matches key_file" if key.matches else key.problem
        lines.append(f"  {key.record_name} ({key.algorithm}, {state}): {found}")
    if not report.dkim:
        lines.append(f"  no [[dkim.keys]] entry for {report.domain} or a parent domain")

    dmarc = report.dmarc
    lines += ["", "DMARC"]
    if dmarc.record:
        lines.append(f"  record  {dmarc.record}  (at {dmarc.found_at})")
    if dmarc.policy is not None:
        lines.append(f"  policy  {dmarc.policy} for {report.domain}; adkim={dmarc.adkim} aspf={dmarc.aspf} pct={dmarc.pct}")
    lines += [f"  {text}" for text in [dmarc.problem, *dmarc.warnings] if text]

    lines += ["", "Verdict", f"  {report.verdict}"]
    return "\n".join(lines)


def _ascii_domain(text: str) -> str | None:
    try:
        domain = idna.encode(text.strip().rstrip("."), uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        return None
    return domain if "." in domain else None
