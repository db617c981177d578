# impromptu — build, run and test on Debian/Ubuntu.
#
#   make demo    install what is missing, then share an xterm (prints the URL to open)
#   make test    install what is missing, then lint + pytest + node --test (what CI runs)
#   make images-test  build the container images with podman, run compose/docker-compose.yml, drive it in
#                Chromium (CI runs it after `make test`)
#
# Package installation runs apt-get only for packages that are missing, through sudo unless already root, and
# never asks questions, so `make test` works unattended as root on a fresh Debian 12.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# apt-get and pip must not run side by side.
.NOTPARALLEL:

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install: the venv is rebuilt only when pyproject.toml is newer.
STAMP := $(VENV)/.installed
# A venv left without pip (made before python3-venv was installed) counts as no venv.
VENV_WORKS = $(BIN)/python -m pip --version >/dev/null 2>&1
DEMO_ARGS ?=
# e.g. make bench BENCH_ARGS="--only relay --quick"
BENCH_ARGS ?=

# What `make demo` needs (ffplay, from ffmpeg, is used by the benchmarks).
RUN_PACKAGES := xvfb xterm x11-xserver-utils xauth ffmpeg fonts-dejavu-core
# Added for the tests: Debian's Chromium at /usr/bin/chromium, driven by playwright (never `playwright install`),
# whose bundled Node.js driver needs libatomic1; procps for pgrep.
TEST_PACKAGES := $(RUN_PACKAGES) chromium procps libatomic1

# Container images: podman builds them (no Docker engine needed), from this Debian base, never pulled.
PODMAN_BASE := docker.io/library/debian:bookworm-slim
IMAGES := base xterm firefox
# Beside the checkout on CI machines and here: installs podman and makes $(PODMAN_BASE) without a registry.
OCI_SETUP := ../shared/tools/oci-setup
# `make images-test` also needs iproute2 (`ip`, for the test's own network namespace), and podman-compose 1.0.6 or
# later, installed in the venv: Debian 12's 1.0.3 cannot run services with host networking.
IMAGES_TEST_PACKAGES := $(TEST_PACKAGES) iproute2
PODMAN_COMPOSE := $(BIN)/podman-compose

# $(call install-missing,PACKAGES,NEED_NODE): one `apt-get update` and one `apt-get install` for whatever is
# missing among PACKAGES, plus python3/python3-venv when no venv can be made, plus nodejs when NEED_NODE is set
# and `node` is not on PATH. Does nothing at all when everything is there.
define install-missing
missing=(); \
for pkg in $(1); do \
	[[ "$$(dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null)" == *" ok installed" ]] || missing+=("$$pkg"); \
done; \
if ! command -v $(PYTHON) >/dev/null 2>&1; then \
	missing+=(python3 python3-venv); \
elif ! $(VENV_WORKS); then \
	probe=$$(mktemp -d); \
	$(PYTHON) -m venv "$$probe/venv" >/dev/null 2>&1 || missing+=(python3-venv); \
	rm -rf "$$probe"; \
fi; \
if [ -n "$(2)" ] && ! command -v node >/dev/null 2>&1; then missing+=(nodejs); fi; \
if [ $${#missing[@]} -eq 0 ]; then echo "system packages: all present"; exit 0; fi; \
echo "system packages missing: $${missing[*]}"; \
if ! command -v apt-get >/dev/null 2>&1; then \
	echo "no apt-get here: install the equivalents of: $${missing[*]}" >&2; exit 1; \
fi; \
sudo=""; \
if [ "$$(id -u)" -ne 0 ]; then \
	command -v sudo >/dev/null 2>&1 || { echo "run as root or install sudo to install: $${missing[*]}" >&2; exit 1; }; \
	sudo=sudo; \
fi; \
$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null; \
$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$${missing[@]}" </dev/null
endef

.PHONY: help deps deps-run deps-test venv demo test lint pytest jstest bench load clean distclean
.PHONY: podman-ready images images-test deps-images-test

help:
	@echo "make demo       install what is missing, then share an xterm: impromptu vdisplay run -- xterm"
	@echo "make test       lint + pytest + node --test (installs missing Debian packages and the venv first)"
	@echo "make lint       ruff check + mypy"
	@echo "make bench      run the benchmarks in bench/ and print a table"
	@echo "make load       20 probe viewers for 60 s, killed and rejoined at random: frame loss, desktop RSS"
	@echo "make images     build the container images impromptu-{base,xterm,firefox} with podman"
	@echo "make images-test  (root) build them, run compose/docker-compose.yml, drive it in Chromium"
	@echo "make deps       install missing Debian packages (deps-run: for demo; deps-test: also for tests)"
	@echo "make venv       create $(VENV) with impromptu installed editable, with test extras"
	@echo "make clean      remove caches; make distclean also removes $(VENV)"

deps: deps-test

deps-run:
	@$(call install-missing,$(RUN_PACKAGES),)

deps-test:
	@$(call install-missing,$(TEST_PACKAGES),node)

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(VENV_WORKS) || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar off -e '.[test]'
	@touch $@

demo: deps-run venv
	$(BIN)/impromptu vdisplay run $(DEMO_ARGS) -- xterm

test: deps-test venv
	@$(MAKE) --no-print-directory lint pytest jstest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

pytest: venv
	$(BIN)/pytest -q tests/

# From inside tests/js, node finds its test files the same way on Node 18 (Debian 12) and on later releases,
# which read command-line arguments as globs rather than directories.
jstest:
	cd tests/js && node --test

bench: deps-test venv
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Not part of `test` or `bench`: a minute and a bit that saturates a small machine.
load: deps-test venv
	$(BIN)/python bench/load.py

# podman, and the Debian base image, are all the builds need; OCI_SETUP provides both where it exists.
podman-ready:
	@if ! command -v podman >/dev/null 2>&1 || ! podman image exists $(PODMAN_BASE); then \
		if [ -x $(OCI_SETUP) ]; then $(OCI_SETUP); \
		else echo "make images needs podman and the local image $(PODMAN_BASE) (no registry: --pull=never)" >&2; \
			exit 1; \
		fi; \
	fi

# --format docker: podman's default OCI format would drop the HEALTHCHECK.
images: podman-ready
	for target in $(IMAGES); do \
		podman build --pull=never --format docker -f images/Dockerfile --target $$target -t impromptu-$$target . ; \
	done

# Not part of `test`: the images (a few minutes the first time), then compose up in a network namespace of the
# test's own, Chromium on the lobby and both desktops, and compose down whatever happens: images/test.sh.
images-test: deps-images-test podman-ready venv images
	@$(PODMAN_COMPOSE) version >/dev/null 2>&1 || \
		$(BIN)/python -m pip install --disable-pip-version-check --progress-bar off 'podman-compose>=1.0.6'
	PODMAN_COMPOSE=$(PODMAN_COMPOSE) images/test.sh

deps-images-test:
	@[ "$$(id -u)" -eq 0 ] || { echo "make images-test runs as root (rootful podman, its own network namespace)" >&2; \
		exit 1; }
	@$(call install-missing,$(IMAGES_TEST_PACKAGES),)

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build *.egg-info
	find . \( -path ./$(VENV) -o -path ./.git \) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
