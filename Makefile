# relayd: `make run` starts the daemon with conf/relayd.toml, `make test`
# installs what the tests need and runs the whole suite.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= conf/relayd.toml

# Debian packages the integration tests use: a DNS server, Postfix's
# smtp-sink, swaks, and Perl's Mail::DKIM (with CryptX for Ed25519) as a
# DKIM verifier independent of dkimpy. prometheus brings promtool, which
# checks /metrics and the alert rules; systemd brings systemd-analyze,
# which checks the unit file.
TEST_PACKAGES := dnsmasq-base postfix swaks libmail-dkim-perl libnet-dns-perl libcryptx-perl prometheus systemd
TEST_CHECK := test -x /usr/sbin/dnsmasq && test -x /usr/sbin/smtp-sink && test -x /usr/bin/swaks \
	&& perl -MMail::DKIM::Verifier -MNet::DNS::Resolver -MCrypt::PK::Ed25519 -e 1 2>/dev/null \
	&& test -x /usr/bin/promtool && test -x /usr/bin/systemd-analyze

# mailauth (Node.js) verifies Ed25519 signatures, which Debian 12's
# Mail::DKIM does not support.
MAILAUTH := tests/support/mailauth/node_modules/mailauth

.PHONY: install install-test system-packages run test clean install-bench bench bench-short

install: $(BIN)/relayd

$(BIN)/relayd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

install-test: $(VENV)/.test-installed

$(VENV)/.test-installed: $(BIN)/relayd pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

system-packages:
	@if ! ( $(TEST_CHECK) ); then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TEST_PACKAGES) >/dev/null; \
		else \
			echo "Install these Debian packages first (as root): $(TEST_PACKAGES)" >&2; exit 1; \
		fi; \
	fi

run: install
	mkdir -p var
	$(BIN)/relayd serve --config $(CONFIG)

$(MAILAUTH): tests/support/mailauth/package.json
	@command -v npm >/dev/null || { echo "Node.js 20 and npm are needed for the DKIM tests" >&2; exit 1; }
	npm install --prefix tests/support/mailauth --no-package-lock --no-audit --no-fund --silent
	touch $@

test: install-test system-packages $(MAILAUTH)
	$(BIN)/python -m pytest

install-bench: $(VENV)/.bench-installed

$(VENV)/.bench-installed: $(BIN)/relayd pyproject.toml
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

# relayd against a private Postfix relay on loopback, about 12 minutes; see
# docs/benchmarks.md. Postfix is measured only as root with the postfix
# package installed, otherwise relayd runs alone and the summary says why.
bench: install-bench
	$(BIN)/python -m bench --output-dir var/bench

# Every scenario with small counts, in about 20 seconds: a check that the
# benchmark runs, not a measurement.
bench-short: install-bench
	$(BIN)/python -m bench --short --output-dir var/bench

clean:
	rm -rf $(VENV) var build *.egg-info tests/support/mailauth/node_modules
