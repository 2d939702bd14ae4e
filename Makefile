# The whole set-up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.13
VENV ?= .venv
PY := $(VENV)/bin/python
API_PORT ?= 3000
AWS_PORT ?= 4566
export SAM_CLI_TELEMETRY := 0

REQS := requirements-dev.txt layers/common/requirements.txt $(wildcard functions/*/requirements.txt)

.PHONY: install run test lint unit integration validate build import-check clean browser-deps

$(VENV)/.installed: $(REQS) pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

install: $(VENV)/.installed

# AUTH=jwt: the template's AuthMode=jwt, with a local OIDC issuer and API Gateway's JWT authorizer.
AUTH ?= open
run: install
	PYTHONPATH=local:ops $(PY) -m local_stack --api-port $(API_PORT) --aws-port $(AWS_PORT) --auth $(AUTH)

# Prints a token of the local issuer of the stack `make run AUTH=jwt` started (for `Authorization: Bearer`).
.PHONY: token
token: install
	@test -n "$(SUB)" || { echo "usage: make token SUB=alice [TTL=seconds]" >&2; exit 2; }
	@PYTHONPATH=local:ops $(PY) -m local_stack token --sub "$(SUB)" $(if $(TTL),--ttl "$(TTL)") --api-port $(API_PORT) --aws-port $(AWS_PORT)

# Runs one function with an event file against the stack `make run` started, like `sam local invoke -e`.
.PHONY: invoke
invoke: install
	@test -n "$(FUNCTION)" -a -n "$(EVENT)" || { echo "usage: make invoke FUNCTION=LogicalId EVENT=events/.../event.json" >&2; exit 2; }
	@PYTHONPATH=local:ops $(PY) -m local_stack invoke "$(FUNCTION)" "$(EVENT)" --api-port $(API_PORT) --aws-port $(AWS_PORT)

# Replays the S3 events that failed after Lambda's retries (ProcessUploadFailures) on the stack `make run`
# started, deleting each message whose replay succeeded. FUNCTION defaults to ProcessUploadFunction.
.PHONY: replay-failures
replay-failures: install
	@PYTHONPATH=local:ops $(PY) -m local_stack replay-failures --aws-port $(AWS_PORT) $(if $(FUNCTION),--function "$(FUNCTION)")

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

validate: install
	$(VENV)/bin/sam validate --lint

# Then bytecode: Lambda's /var/task is read-only, so a package shipped without .pyc is compiled again
# on every cold start. unchecked-hash: the zip's timestamps cannot invalidate it (local/build_check.py).
build: install
	$(VENV)/bin/sam build
	$(PY) -m compileall -q -j 0 --invalidation-mode unchecked-hash .aws-sam/build

# Imports each built function in a clean interpreter with only its artifact and layers on the path.
import-check: build
	PYTHONPATH=local $(PY) local/build_check.py

unit: install
	$(PY) -m pytest tests/unit

integration: install
	$(PY) -m pytest tests/integration

# The gates side by side (much of each is waiting on pip, sam or a subprocess), then the tests.
test: install browser-deps
	@$(MAKE) --no-print-directory -j4 -Otarget lint validate import-check checkov
	$(PY) -m pytest

# IaC security scan of template.yaml; fails on any failed check (skips are justified in the template).
# checkov pins boto3/botocore 1.35.x, which the functions' pins exclude: it gets a venv of its own
# inside $(VENV) (so `make clean` removes it), linked as $(VENV)/bin/checkov.
.PHONY: checkov
checkov: install
	@cmp -s requirements-checkov.txt $(VENV)/checkov/.installed || { \
		$(PY) -m venv $(VENV)/checkov && \
		$(VENV)/checkov/bin/python -m pip install -q --upgrade pip && \
		$(VENV)/checkov/bin/python -m pip install -q -r requirements-checkov.txt && \
		cp requirements-checkov.txt $(VENV)/checkov/.installed; }
	@ln -sf ../checkov/bin/checkov $(VENV)/bin/checkov
	$(VENV)/bin/checkov --file template.yaml --framework cloudformation --compact --quiet --skip-download

# The system Chromium the browser test drives (playwright's own browser download is not used). The test
# (tests/integration/test_upload_page.py) runs /usr/lib/chromium/chromium or /usr/bin/chromium, else the
# `chromium` on the PATH. apt installs it as root on Debian/Ubuntu; elsewhere this says how and fails.
define CHROMIUM_HELP
The browser test (tests/integration/test_upload_page.py) needs Chromium: it runs
/usr/lib/chromium/chromium or /usr/bin/chromium when one exists, otherwise the `chromium` on the PATH.
Install it, then run `make test` again:
  Debian:        sudo apt-get install chromium        (or: sudo make browser-deps)
  Ubuntu:        sudo snap install chromium           (puts `chromium` on the PATH, in /snap/bin)
  Fedora:        sudo dnf install chromium
  Arch:          sudo pacman -S chromium
  Alpine:        sudo apk add chromium
  macOS:         brew install --cask chromium, then put it on the PATH as `chromium`:
                 ln -s /Applications/Chromium.app/Contents/MacOS/Chromium /usr/local/bin/chromium
Any recent Chromium (or Chrome) build works, as long as one of those paths runs it.
endef
export CHROMIUM_HELP

browser-deps:
	@if [ -f /usr/lib/chromium/chromium ] || [ -f /usr/bin/chromium ] || command -v chromium >/dev/null; then \
		exit 0; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "make browser-deps: Chromium is missing, and installing it with apt needs root (you are $$(id -un))." >&2; \
	elif ! command -v apt-get >/dev/null; then \
		echo "make browser-deps: Chromium is missing, and this system has no apt-get (not Debian/Ubuntu)." >&2; \
	elif apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; then \
		exit 0; \
	else \
		echo "make browser-deps: Chromium is missing, and \`apt-get install chromium\` failed (see above)." >&2; \
	fi; \
	echo "$$CHROMIUM_HELP" >&2; \
	exit 1

# Hot-path speed and memory against moto, each next to a reference from the same run (BENCHMARKS.md).
.PHONY: bench
bench: build
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .ruff_cache
