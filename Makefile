# The one entry point for people and CI. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TOOLS  := .tools
SAM    := $(TOOLS)/sam/bin/sam
SAM_CLI_VERSION := 1.170.0
CHECKOV := $(TOOLS)/checkov/bin/checkov
CHECKOV_VERSION := 3.3.30
# `sam build` for a python3.12 runtime needs a python3.12 on PATH: take one from pyenv when it is there.
PY312  := $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin) $(dir $(shell command -v python3.12 2>/dev/null)))
# LocalStack's runtime (host mode, no Docker) needs Python 3.13: pyenv's when it is there.
PY313  := $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) $(shell command -v python3.13 2>/dev/null))
LOCALSTACK := $(TOOLS)/localstack/.installed
export SAM_CLI_TELEMETRY = 0

.PHONY: install demo up test lint typecheck validate checkov unit integration build browser screenshots clamav localstack uppy clean

$(BIN)/docpipe: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[local,dev]"
	touch $@

$(SAM):
	$(PYTHON) -m venv $(TOOLS)/sam
	$(TOOLS)/sam/bin/python -m pip install --quiet "aws-sam-cli==$(SAM_CLI_VERSION)"

# checkov has its own venv: its pins would fight the project's and SAM's.
$(CHECKOV):
	$(PYTHON) -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/python -m pip install --quiet "checkov==$(CHECKOV_VERSION)"

# LocalStack in its own Python 3.13 venv, every package pinned. Where it cannot be installed (no Python 3.13,
# no PyPI), say why and go on: the LocalStack suite then skips and says why too.
$(LOCALSTACK): local/localstack-requirements.txt
	@if [ -z "$(PY313)" ]; then \
		echo "no Python 3.13 for LocalStack's runtime: the LocalStack suite will skip"; \
	else \
		echo "installing LocalStack (host mode) into $(TOOLS)/localstack"; \
		rm -rf $(TOOLS)/localstack && $(PY313) -m venv $(TOOLS)/localstack && \
		$(TOOLS)/localstack/bin/python -m pip install --quiet --upgrade pip && \
		$(TOOLS)/localstack/bin/python -m pip install --quiet -r local/localstack-requirements.txt && touch $@ || \
		{ echo "could not install LocalStack: the LocalStack suite will skip"; rm -rf $(TOOLS)/localstack; }; \
	fi

install: $(BIN)/docpipe ## install docpipe, the local stack and the dev tools into .venv

demo: install ## process the bundled samples end to end on an embedded local stack
	$(BIN)/docpipe process samples/*

up: install ## run the local stack until Ctrl-C
	$(BIN)/docpipe up

test: install $(SAM) browser clamav localstack uppy lint validate checkov typecheck ## everything CI runs: lint, template checks, types, all tests
	$(BIN)/python -m pytest -n 2 --dist loadgroup  # two processes; a suite that shares a stack runs whole in one (tests/conftest.py)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy layers/docpipe/docpipe functions/ingest/ingest functions/api/api functions/presets/presets functions/extract/extract functions/ocr/ocr functions/sweeper/sweeper functions/scan/scan functions/notifier/notifier functions/push/push functions/complete/complete

validate: $(SAM)
	$(SAM) validate --lint

checkov: $(CHECKOV) ## security checks of template.yaml; skipped checks and their reasons are in .checkov.yaml
	$(CHECKOV) --config-file .checkov.yaml

unit: install
	$(BIN)/python -m pytest tests/unit

integration: install
	$(BIN)/python -m pytest tests/integration

localstack: $(LOCALSTACK) ## LocalStack in host mode into .tools/localstack (`docpipe localstack start|stop` runs it)

build: $(SAM) ## sam build (needs python3.12)
	PATH="$(PY312):$$PATH" $(SAM) build --cached --parallel

# docs/page.png and docs/console.png, shown in the README: a local stack, the samples, headless Chromium.
screenshots: install browser
	$(BIN)/python docs/screenshots.py

# The upload page's tests drive headless Chromium. Debian's packages where apt can install them (about
# 25 s); elsewhere install Chromium and ChromeDriver yourself, or those tests skip and say why.
browser:
	@if command -v chromedriver >/dev/null && (command -v chromium || command -v chromium-browser || command -v google-chrome) >/dev/null; then \
		true; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing Chromium and ChromeDriver for the page tests"; \
		(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1)) || \
		echo "could not install Chromium: the page tests will skip"; \
	else \
		echo "no Chromium/ChromeDriver and no apt as root: the page tests will skip"; \
	fi

# Stock Uppy for the real-client test of the Companion S3 routes (tests/integration/test_uppy.py): the `uppy`
# package at the version its routes were matched to (bundling @uppy/aws-s3 4.3.2), from npm into .tools/uppy.
# Without node and npm (apt-get install nodejs npm), say so: that test skips and says why.
UPPY_VERSION := 4.18.3
uppy:
	@if [ -f $(TOOLS)/uppy/node_modules/uppy/package.json ] && grep -q '"version": "$(UPPY_VERSION)"' $(TOOLS)/uppy/node_modules/uppy/package.json; then \
		true; \
	elif command -v npm >/dev/null; then \
		mkdir -p $(TOOLS)/uppy && npm install --prefix $(TOOLS)/uppy --no-audit --no-fund --silent uppy@$(UPPY_VERSION) || \
		echo "could not install Uppy: the Uppy test will skip"; \
	else \
		echo "no npm: the Uppy test will skip"; \
	fi

# The malware scan's ClamAV (clamscan, and clamd, which the local stack runs warm with the project's test
# signatures, local/docpipe_local/signatures, or freshclam's database when it has one). Debian's packages where
# apt can install them; elsewhere install ClamAV yourself, or the local stack scans with ScanEngine none (it says so).
clamav:
	@if command -v clamscan >/dev/null && command -v clamd >/dev/null; then \
		true; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing ClamAV for the malware scan"; \
		(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clamav clamav-daemon >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clamav clamav-daemon >/dev/null 2>&1)) || \
		echo "could not install ClamAV: the local stack will scan with ScanEngine none and the scan tests will skip"; \
	else \
		echo "no ClamAV and no apt as root: the local stack will scan with ScanEngine none and the scan tests will skip"; \
	fi

clean:
	rm -rf .aws-sam .docpipe .pytest_cache .mypy_cache .ruff_cache
