"""Outbound delivery: routing, the SMTP courier, outcomes, retries and the scheduler."""
