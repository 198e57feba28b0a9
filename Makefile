# di2siem: developer entry points.
#   make demo       one-command tour (root, Debian/Ubuntu): a throwaway systemd-nspawn target,
#                   the simulators inside it, playbooks/site.yml, events arriving at the sink
#                   (INTAKE=splunk_hec|elasticsearch|sentinel|otlp|syslog: that SIEM's simulator)
#   make demo-down  remove the demo target
#   make lint       ruff, the house rules (tools/check_layers.py), yamllint, ansible-lint
#   make test       lint, then pytest: the collector tests and the Molecule scenarios
#                   (tests/molecule/test_molecule.py), ending with one plain pytest summary line
#   make dist       dist/: the wheel, the sdist, the collection tarball, the offline
#                   wheelhouse tarball for the targets, and SHA256SUMS over them
#   make lock       re-resolve the runtime dependencies into requirements.lock (hashes)
# demo, lint, test and dist first install what they need (works in a fresh clone): the apt packages
# when root (APT_DEPS), then the project venv .venv with the dev dependencies.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

REPO := $(CURDIR)
VENV := $(REPO)/.venv
PYTHON ?= python3
TARGET := $(REPO)/molecule/shared/target.sh
# Overridable (make demo DEMO_NAME=... DEMO_INDEX=...) to run a second demo side by side.
# INTAKE: the SIEM the demo ships to, its simulator on the target; the role variables of the
# others are molecule/shared/vars/intakes/<INTAKE>.yml.
INTAKE ?= coralogix
INTAKE_VARS := $(REPO)/molecule/shared/vars/intakes/$(INTAKE).yml
SINK_NAME := $(if $(filter coralogix,$(INTAKE)),Coralogix sink,$(INTAKE) simulator)
DEMO_NAME ?= di2siem-demo
DEMO_INDEX ?= 200
DEMO_IP := 10.213.$(DEMO_INDEX).2
DEMO_DIR := $(REPO)/.cache/demo
# The demo target runs the host's own release (its mirror is the host's): bookworm on Debian 12,
# noble on Ubuntu 24.04, ...
DEMO_SUITE ?= $(shell . /etc/os-release 2>/dev/null && echo "$${VERSION_CODENAME:-bookworm}")
# rsyslog, rsyslog-gnutls: the real receiver of tests/interop/test_interop_rsyslog.py, which runs
# its own rsyslogd (own config, pid file, port on 127.0.0.1). If apt starts the system's rsyslog
# too, Debian's default configuration opens no network port. curl: Splunk's documented HEC
# examples (tests/interop/test_interop_splunk_hec.py).
APT_DEPS := debootstrap systemd-container iptables iproute2 openssh-client python3-venv \
  rsyslog rsyslog-gnutls curl

# The project venv's tools come first, always: decided when the Makefile is parsed, which in a
# fresh clone is before the venv exists (a directory missing from PATH is harmless).
export PATH := $(VENV)/bin:$(PATH)
# Written by tests/molecule/test_molecule.py when it cannot run the scenarios; make test repeats it last.
MOLECULE_NOT_RUN := $(REPO)/.cache/molecule-not-run

.PHONY: help demo demo-needs-root demo-down lint test venv apt-deps dist lock promtool

help:
	@sed -n '2,13s/^# \{0,1\}//p' Makefile

# Root: installs the missing APT_DEPS. Not root: only names them (the venv may still work; the
# Molecule scenarios and the demo will not).
apt-deps:
	@missing=""; for p in $(APT_DEPS); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" -ne 0 ]; then \
	  echo "apt-deps: not root, not installing:$$missing (the Molecule scenarios and make demo need them)"; \
	  exit 0; \
	fi; \
	echo "installing:$$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing

# apt-deps first: python3-venv is one of them. The collector and the simulators (sandbox/, their
# own distribution di2siem-sandbox), both editable: the tests and benchmarks import both.
$(VENV)/.installed: pyproject.toml sandbox/pyproject.toml | apt-deps
	[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]' -e ./sandbox
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python tools/check_layers.py
	$(VENV)/bin/python tools/check_layers.py --no-layers sandbox/di2siem_sandbox
	$(VENV)/bin/yamllint -s .
	$(VENV)/bin/ansible-lint

# promtool for tests/e2e/test_promtool.py: Debian's prometheus package downloaded and unpacked into
# .cache/tools (never installed: that would start a server); kept once there. Fails when apt-get
# cannot download it; without apt-get at all it says so and the promtool tests skip.
promtool:
	@$(REPO)/tests/support/fetch_promtool.sh $(REPO)/.cache/tools >/dev/null || [ $$? -eq 3 ]

# Lint first; pytest (collector tests + Molecule scenarios) prints the closing summary line,
# unless the Molecule scenarios could not run: then that is said once more, last.
test: apt-deps venv promtool
	@$(MAKE) --no-print-directory lint || { echo "make test: lint failed (above); 1 failed, pytest not run"; exit 1; }
	@rm -f $(MOLECULE_NOT_RUN)
	@rc=0; $(VENV)/bin/pytest || rc=$$?; \
	if [ -s $(MOLECULE_NOT_RUN) ]; then echo "make test: $$(cat $(MOLECULE_NOT_RUN))"; fi; \
	exit $$rc

# The release, from the working tree. Reproducible: SOURCE_DATE_EPOCH fixes every timestamp;
# the dependencies are the bytes requirements.lock names. The wheel is the wheelhouse's own.
VERSION = $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' collector/di2siem/__init__.py)
DIST := $(REPO)/dist
EPOCH := 315619200

dist: venv
	rm -rf $(DIST) && mkdir -p $(DIST)
	SOURCE_DATE_EPOCH=$(EPOCH) $(VENV)/bin/python roles/di2siem/files/build_wheelhouse.py \
	  --source . --dest $(DIST)/wheelhouse --version $(VERSION) >/dev/null
	cp $(DIST)/wheelhouse/di2siem-$(VERSION)-py3-none-any.whl $(DIST)/
	tar --sort=name --mtime=@$(EPOCH) --owner=0 --group=0 --numeric-owner \
	  --exclude=.lock --exclude=.source-sha256 \
	  --transform 's,^wheelhouse,di2siem-wheelhouse-$(VERSION),' -C $(DIST) -cf - wheelhouse \
	  | gzip -n > $(DIST)/di2siem-wheelhouse-$(VERSION).tar.gz
	SOURCE_DATE_EPOCH=$(EPOCH) $(VENV)/bin/python -c \
	  'from setuptools import build_meta as b; b.build_sdist("$(DIST)")' >/dev/null
	$(VENV)/bin/ansible-galaxy collection build --output-path $(DIST) .
	cd $(DIST) && sha256sum *.whl *.tar.gz > SHA256SUMS && cat SHA256SUMS

lock: venv
	$(VENV)/bin/python roles/di2siem/files/build_wheelhouse.py --source . --update-lock
	cat requirements.lock

demo-needs-root:
	@[ "$$(id -u)" -eq 0 ] || { echo "make demo needs root (debootstrap, network namespace, nspawn)"; exit 1; }

demo: demo-needs-root apt-deps venv
	@[ "$(INTAKE)" = coralogix ] || [ -f $(INTAKE_VARS) ] || { echo "make demo: INTAKE=$(INTAKE)" \
	  "is not one of coralogix $$(cd $(dir $(INTAKE_VARS)) && ls *.yml | sed 's/\.yml$$//' | tr '\n' ' ')"; exit 2; }
	$(TARGET) up $(DEMO_NAME) $(DEMO_INDEX) $(DEMO_SUITE)
	mkdir -p $(DEMO_DIR)/group_vars/di2siem
	rm -f $(DEMO_DIR)/group_vars/di2siem/intake.yml
	printf '%s\n' '---' 'di2siem:' '  hosts:' '    $(DEMO_NAME):' \
	  '      ansible_host: $(DEMO_IP)' '      ansible_user: root' \
	  "      ansible_private_key_file: $$($(TARGET) key)" \
	  '      ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes' \
	  > $(DEMO_DIR)/hosts.yml
	printf '%s\n' '---' '# Demo only: the simulators inside the target, their sandbox keys.' \
	  'di2siem_enforce_resources: false' \
	  'di2siem_jumpcloud_api_key: sandbox-jumpcloud-key' \
	  'di2siem_jumpcloud_base_url: http://127.0.0.1:8400' \
	  $(if $(filter coralogix,$(INTAKE)),'di2siem_coralogix_api_key: sandbox-coralogix-key' \
	  'di2siem_siem_format: coralogix' \
	  'di2siem_siem_url: http://127.0.0.1:8401/logs/v1/singles') \
	  'di2siem_application_name: di2siem-demo' \
	  'di2siem_initial_days_back: -3' \
	  'di2siem_sandbox_backlog: 500' \
	  'di2siem_sandbox_rate: 1' \
	  > $(DEMO_DIR)/group_vars/di2siem/vars.yml
	[ "$(INTAKE)" = coralogix ] || cp $(INTAKE_VARS) $(DEMO_DIR)/group_vars/di2siem/intake.yml
	ANSIBLE_HOST_KEY_CHECKING=false $(VENV)/bin/ansible-playbook -i $(DEMO_DIR)/hosts.yml molecule/shared/prepare.yml
	ANSIBLE_HOST_KEY_CHECKING=false $(VENV)/bin/ansible-playbook -i $(DEMO_DIR)/hosts.yml playbooks/site.yml
	@echo; echo "== waiting for the cron job (every minute) to ship events to the sink (up to 150 s)"
	@for i in $$(seq 50); do \
	  n=$$($(TARGET) ssh $(DEMO_NAME) $(DEMO_INDEX) 'cat /var/lib/di2siem-sandbox/sink.jsonl 2>/dev/null | wc -l'); \
	  printf '\r  records at the sink: %s ' "$$n"; \
	  [ "$$n" -gt 0 ] && break; sleep 3; \
	done; echo; \
	sleep 5; \
	$(TARGET) ssh $(DEMO_NAME) $(DEMO_INDEX) 'set -e; \
	  echo "== the run summaries of the scheduled job (/var/log/di2siem/di2siem.log):"; \
	  grep "run summary" /var/log/di2siem/di2siem.log | tail -n 3; \
	  echo "== records at the $(SINK_NAME): $$(wc -l < /var/lib/di2siem-sandbox/sink.jsonl)"; \
	  echo "== the last one:"; \
	  tail -n 1 /var/lib/di2siem-sandbox/sink.jsonl | python3 -m json.tool | head -n 40'
	@echo
	@echo "New events keep coming (1/s); the job ships them every minute. Watch them with:"
	@echo "  $(TARGET) ssh $(DEMO_NAME) $(DEMO_INDEX) tail -f /var/lib/di2siem-sandbox/sink.jsonl"
	@echo "  $(TARGET) ssh $(DEMO_NAME) $(DEMO_INDEX) tail -f /var/log/di2siem/di2siem.log"
	@echo "Log in: $(TARGET) ssh $(DEMO_NAME) $(DEMO_INDEX)"
	@echo "Tear down: make demo-down$(if $(filter-out di2siem-demo,$(DEMO_NAME)), DEMO_NAME=$(DEMO_NAME) DEMO_INDEX=$(DEMO_INDEX))"

demo-down:
	$(TARGET) down $(DEMO_NAME) $(DEMO_INDEX)
	rm -rf $(DEMO_DIR)
