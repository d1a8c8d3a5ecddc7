"""`relayd verify`: check a received message's DKIM signatures (and SPF) as a receiver would."""

import sys

import authres
import dkim
import dns.exception
import dns.nameserver
import dns.resolver
import spf

from relayd.config import Config
from relayd.headers import header_fields, without_obsolete_names


def make_resolver(config: Config | None) -> dns.resolver.Resolver:
    """Return a resolver on the configured name servers, or the system's when there are none."""
    if config is not None and config.dns.nameservers:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(ns.host, ns.port) for ns in config.dns.nameservers]
        resolver.lifetime = config.dns.timeout
        return resolver
    return dns.resolver.Resolver()


def txt_function(resolver: dns.resolver.Resolver):
    """Return a TXT look-up in the form dkimpy's dnsfunc takes: the joined strings, or None."""

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode().rstrip("."), "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(answer[0].strings)

    return lookup


def dkim_results(message: bytes, resolver: dns.resolver.Resolver) -> list[authres.DKIMAuthenticationResult]:
    """Verify each DKIM-Signature in `message` and return one RFC 8601 result per signature."""
    count = sum(1 for name, _ in header_fields(message) if name == "dkim-signature")
    if count == 0:
        return []
    lookup = txt_function(resolver)
    # dkimpy cannot parse the obsolete "Name :" form; the rewritten copy
    # verifies the same under relaxed header canonicalization.
    message = without_obsolete_names(message)
    results = []
    for index in range(count):
        verifier = dkim.DKIM(message)
        reason = None
        try:
            result = "pass" if verifier.verify(idx=index, dnsfunc=lookup) else "fail"
        except dns.exception.DNSException as exc:
            result, reason = "temperror", f"DNS look-up failed: {exc}"
        except dkim.ValidationError as exc:
            # RFC 8601 2.7.1: a signature that does not verify is "fail";
            # permerror is for signatures that cannot be processed at all.
            result, reason = "fail", _reason(exc)
        except dkim.DKIMException as exc:
            result, reason = "permerror", _reason(exc)
        fields = getattr(verifier, "signature_fields", {}) or {}
        results.append(
            authres.DKIMAuthenticationResult(
                result=result,
                reason=reason,
                header_d=_text(fields.get(b"d")),
                header_i=_text(fields.get(b"i")),
                header_s=_text(fields.get(b"s")),
                header_a=_text(fields.get(b"a")),
            )
        )
    return results


def spf_result(ip: str, mail_from: str, helo: str) -> authres.SPFAuthenticationResult:
    result, explanation = spf.check2(i=ip, s=mail_from, h=helo)
    return authres.SPFAuthenticationResult(result=result, smtp_mailfrom=mail_from, reason=explanation or None)


def run(config: Config | None, ip: str | None, mail_from: str | None, helo: str | None) -> int:
    """Read a message on standard input and print its Authentication-Results header."""
    message = sys.stdin.buffer.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    resolver = make_resolver(config)
    results: list = dkim_results(message, resolver)
    if not results:
        results.append(authres.DKIMAuthenticationResult(result="none", reason="no DKIM-Signature field"))
    if ip and mail_from is not None:
        # pyspf resolves through dnspython's default resolver.
        dns.resolver.default_resolver = resolver
        results.append(spf_result(ip, mail_from, helo or mail_from.rpartition("@")[2]))
    authserv_id = config.server.hostname if config is not None else "relayd"
    print(str(authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=results)))
    return 0 if all(r.result == "pass" for r in results) else 1


def _reason(error: Exception) -> str:
    """Return dkimpy's message without the byte-string details it appends in parentheses."""
    return str(error).split(" (", 1)[0]


def _text(value: bytes | None) -> str | None:
    return value.decode("ascii", "replace") if value else None
