"""Inbound SMTP: the listener applications submit mail to."""
