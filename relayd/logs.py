"""structlog set-up: one JSON object per line on stdout, console rendering on a TTY."""

import logging
import sys

import structlog


def configure_logging(level: str = "info", *, force_json: bool = False) -> None:
    """Route structlog and the standard library's logging (aiosmtpd, asyncio) to stdout."""
    use_console = sys.stdout.isatty() and not force_json
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )

    # Library records go through the same renderer, so stdout stays one
    # JSON object per line. aiosmtpd logs every command at INFO and bad
    # commands at WARNING, with raw client bytes; relayd logs its own
    # "rejected" and "session_closed" events instead, so only its errors pass.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("mail.log").setLevel(logging.ERROR)
