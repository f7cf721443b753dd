# The two commands: `make demo` and `make test`. Everything else is a helper they call.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench soak schema clean broker browser messages turn

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian's mosquitto: the hub supervises it as a child when no external broker is given,
# and the tests start their own on free ports. openssl: the TLS tests make their own CA.
# Installed only when missing.
broker:
	@{ command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto; } && command -v openssl >/dev/null 2>&1 || { \
	  echo "installing Debian's mosquitto and openssl"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq mosquitto openssl; }

# Debian's Chromium for the browser tests (tests/browser): Playwright drives it with the wheel's own
# driver and never downloads a browser. Installed only when missing.
browser:
	@test -x /usr/bin/chromium || { \
	  echo "installing Debian's chromium"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

# Debian's coturn: the live-consult tests relay media through a TURN server they start on loopback.
turn:
	@command -v turnserver >/dev/null 2>&1 || { \
	  echo "installing Debian's coturn"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq coturn; }

demo: $(STAMP) broker
	$(BIN)/hub demo

lint: $(STAMP)
	$(BIN)/ruff check device hub tests
	$(BIN)/ruff format --check device hub tests

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) broker browser turn lint typecheck
	$(BIN)/pytest

bench: $(STAMP) broker browser
	$(BIN)/hub bench ingest
	$(BIN)/hub bench kiosk-idle
	$(BIN)/hub bench workspace
	$(BIN)/kiosk bench camera-vitals
	$(BIN)/kiosk bench consult

# Steadiness: the fault tests and the Bluetooth end-to-end tests, ten times in a row; any failure stops it.
soak: $(STAMP) broker
	for i in 1 2 3 4 5 6 7 8 9 10; do echo "soak round $$i"; $(BIN)/pytest -q -p no:cacheprovider tests/test_faults.py tests/ble/test_collector.py tests/ble/test_bumble_transport.py || exit 1; done

# The kiosk screen's translations: new strings are added (untranslated) to every locale/<lang>/.../messages.po.
messages: $(STAMP)
	$(BIN)/python -m device.screen.catalog

schema: $(STAMP)
	$(BIN)/kiosk protocol schema > device/protocol/envelope.schema.json
	$(BIN)/kiosk protocol receipt-schema > device/protocol/receipt.schema.json

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
