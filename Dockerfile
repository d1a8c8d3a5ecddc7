# relayd container image. Build in the repository: docker build -t relayd .
# Run: docker run -d -p 2525:2525 -p 2580:2580 -v relayd-spool:/var/spool/relayd relayd
FROM python:3.11-slim-bookworm

# Unbuffered stdout, so each JSON log line reaches `docker logs` at once.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 2525 relayd \
    && useradd --system --uid 2525 --gid relayd --home-dir /var/spool/relayd --no-create-home \
       --shell /usr/sbin/nologin relayd \
    && install -d -o relayd -g relayd -m 0700 /var/spool/relayd \
    && install -d -o root -g relayd -m 0750 /etc/relayd

WORKDIR /build
COPY pyproject.toml README.md ./
COPY relayd ./relayd
RUN pip install . && rm -rf /build

COPY conf/relayd.container.toml /etc/relayd/relayd.toml
RUN chown root:relayd /etc/relayd/relayd.toml && chmod 0640 /etc/relayd/relayd.toml

USER relayd
WORKDIR /var/spool/relayd
# Accepted mail lives here until it is delivered: keep it on a volume.
VOLUME ["/var/spool/relayd"]
EXPOSE 2525 2580

# /healthz answers 200 once the spool is recovered and the listeners are
# up, and 503 while relayd starts or drains. The slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import http.client, sys; c = http.client.HTTPConnection('127.0.0.1', 2580, timeout=4); c.request('GET', '/healthz'); sys.exit(c.getresponse().status != 200)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["relayd"]
CMD ["serve", "--config", "/etc/relayd/relayd.toml"]
