# The two commands: `make run` (whole system on embedded defaults) and `make test`.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install bench clean-data chromium history

run: $(STAMP)
	$(BIN)/python devstack.py

test: $(STAMP) chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# tests/test_digest_chromium.py opens a rendered digest in Debian's Chromium (playwright drives
# it and never downloads a browser). Installed from Debian's packages when missing.
chromium:
	@[ -x /usr/bin/chromium ] || { \
		echo "installing Debian's chromium (apt-get) for tests/test_digest_chromium.py"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	} || true
	@[ -x /usr/bin/chromium ] || { echo "tests need /usr/bin/chromium: run 'apt-get install chromium' as root"; exit 1; }

install: $(STAMP)

# Re-record one replay history (or a few, or `new`): make history NAME=alert_monitor_price
# For new, unreleased workflow types only; tests/record.py finds the tests that record it.
history: $(STAMP)
	@[ -n "$(NAME)" ] || { echo "usage: make history NAME=<history name, glob, or new>"; exit 2; }
	$(BIN)/python -m tests.record $(NAME)

# Reinstall when pyproject.toml changes; everything comes from PyPI (no download at run time).
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "Python 3.11+ is required, found " + sys.version.split()[0]'
	@# A venv without pip (Debian without python3-venv) is useless: start over.
	$(BIN)/python -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); } \
		|| { rm -rf $(VENV); echo "cannot create a venv: install python3.11-venv (Debian/Ubuntu)"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Removes the embedded stack's state (PostgreSQL data, Temporal history, Maildir).
clean-data:
	rm -rf .data
