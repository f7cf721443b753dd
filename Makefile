# The two commands: `make demo` and `make test`. Everything else is a helper they call.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench soak schema clean broker browser messages turn lock audit sbom

# The locked versions (requirements.lock), then the project itself without resolving again; `pip check` fails
# the build when pyproject.toml asks for something the lock does not satisfy (run `make lock` then).
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e '.[dev]'
	$(BIN)/pip check
	$(BIN)/kiosk camera assets fetch
	touch $(STAMP)

# Resolve pyproject.toml's dependencies afresh in a scratch venv and pin the result.
lock:
	rm -rf .lock-venv && $(PY) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	{ sed -n '1,2p' requirements.lock; .lock-venv/bin/pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv

# Known vulnerabilities in the locked dependencies, from the OSV database. Needs api.osv.dev: --strict makes an
# unreachable service or a package it cannot look up a failure, never a silent pass.
audit: $(STAMP)
	$(BIN)/pip-audit --strict --progress-spinner off --vulnerability-service osv --no-deps --disable-pip -r requirements.lock

# The software bill of materials (CycloneDX 1.6 JSON) of the environment the tests ran in: every package,
# its version, licence and package URL. Offline; part of `make test` (tests/test_supply_chain.py checks it against
# the lock). Schema validation is left to consumers: it took cyclonedx-py 35 s here.
sbom: $(STAMP)
	mkdir -p build
	$(BIN)/cyclonedx-py environment $(BIN)/python --pyproject pyproject.toml --output-reproducible --of JSON --no-validate -o build/sbom.cdx.json

# Debian's mosquitto: the hub supervises it as a child when no external broker is given,
# and the tests start their own on free ports. openssl: the TLS tests make their own CA.
# gcc and the plugin headers: the hub builds its broker plugin (hub/fleet/kiosk_guard.c) once.
# Installed only when missing.
BROKER_PACKAGES := mosquitto openssl gcc libc6-dev mosquitto-dev libmosquitto-dev libssl-dev
broker:
	@missing=$$(for p in $(BROKER_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	[ -z "$$missing" ] || { \
	  echo "installing Debian's" $$missing; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; }

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

# Debian's PostgreSQL server binaries: the tests start their own clusters from them in temp folders, on free ports
# (tests/postgres.py), beside whatever server the machine runs. Debian starts a cluster of its own on install;
# nothing here uses it. Installed only when missing.
.PHONY: postgres
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing Debian's postgresql"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql; }

# The independent FHIR R4 oracle the tests run (tests/fhir_oracle.py -> tests/fhir_validator: HL7's JSON Schema and
# vital-signs profiles, @medplum/core's validator). Debian's nodejs and npm only when node is missing (@medplum/core
# 4.5.2 needs Node >= 20.19: older is refused here); `npm ci` only when package-lock.json is newer than the last one.
FHIR_VALIDATOR := tests/fhir_validator
.PHONY: fhir-validator
fhir-validator:
	@command -v node >/dev/null 2>&1 || { \
	  echo "installing Debian's nodejs and npm"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm; }
	@node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' || { \
	  echo "tests/fhir_validator needs Node >= 20.19, this is $$(node --version)"; exit 1; }
	@[ $(FHIR_VALIDATOR)/node_modules/.installed -nt $(FHIR_VALIDATOR)/package-lock.json ] || { \
	  npm ci --prefix $(FHIR_VALIDATOR) --no-audit --no-fund && touch $(FHIR_VALIDATOR)/node_modules/.installed; }

demo: $(STAMP) broker
	$(BIN)/hub demo

lint: $(STAMP)
	$(BIN)/ruff check device hub tests
	$(BIN)/ruff format --check device hub tests

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) broker browser turn postgres fhir-validator lint typecheck sbom
	$(BIN)/pytest

bench: $(STAMP) broker browser postgres
	$(BIN)/hub bench ingest --rounds 3
	$(BIN)/hub bench kiosk-idle
	$(BIN)/hub bench workspace
	$(BIN)/kiosk bench camera-vitals
	$(BIN)/kiosk bench consult

# Steadiness: the fault tests and the Bluetooth end-to-end tests, ten times in a row; any failure stops it.
# Then the recovery figure: the time until commits resume after a broker kill, a hub kill and a full disk.
soak: $(STAMP) broker
	for i in 1 2 3 4 5 6 7 8 9 10; do echo "soak round $$i"; $(BIN)/pytest -q -p no:cacheprovider tests/test_faults.py tests/test_disk_full_kiosk.py tests/test_disk_full_hub.py tests/ble/test_collector.py tests/ble/test_bumble_transport.py || exit 1; done
	$(BIN)/python -m tests.soak_recovery --rounds 3

# The kiosk screen's translations: new strings are added (untranslated) to every locale/<lang>/.../messages.po.
messages: $(STAMP)
	$(BIN)/python -m device.screen.catalog

schema: $(STAMP)
	$(BIN)/kiosk protocol schema > device/protocol/envelope.schema.json
	$(BIN)/kiosk protocol receipt-schema > device/protocol/receipt.schema.json

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache build
