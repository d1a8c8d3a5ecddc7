# relayd: `make run` starts the daemon with conf/relayd.toml, `make test`
# installs what the tests need and runs the whole suite.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= conf/relayd.toml

# Debian packages the integration tests use: a DNS server, Postfix's
# smtp-sink and swaks.
TEST_PACKAGES := dnsmasq-base postfix swaks
TEST_BINARIES := /usr/sbin/dnsmasq /usr/sbin/smtp-sink /usr/bin/swaks

.PHONY: install install-test system-packages run test clean

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
	@missing=""; for bin in $(TEST_BINARIES); do [ -x $$bin ] || missing=1; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TEST_PACKAGES) >/dev/null; \
		else \
			echo "Install these Debian packages first (as root): $(TEST_PACKAGES)" >&2; exit 1; \
		fi; \
	fi

run: install
	mkdir -p var
	$(BIN)/relayd serve --config $(CONFIG)

test: install-test system-packages
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) var build *.egg-info
