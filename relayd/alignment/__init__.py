"""DMARC alignment (RFC 7489): DMARC records, organizational domains, SPF, and the preflight decision."""
