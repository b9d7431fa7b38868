# The local stack and the project's checks. `make help` lists the targets.
SHELL := /bin/bash
PY := .venv/bin/python
export PYTHONPATH := $(CURDIR)

.DEFAULT_GOAL := help
.PHONY: help install up down status logs clean test test-unit test-cli test-integration test-security test-faults bench lint

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

install: ## install what is missing (Debian packages, uv, .venv); run by up and test
	@scripts/bootstrap.sh

up: install ## start the whole local stack and return once it is healthy
	@$(PY) -m stack up

down: ## stop every service (data is kept until make clean)
	@if [ -x $(PY) ]; then $(PY) -m stack down; else echo "nothing installed, nothing running"; fi

status: ## each service, its port, state and health
	@$(PY) -m stack status

logs: ## tail every service log
	@$(PY) -m stack logs

clean: ## stop everything, delete .data (Kafka, Redis, MLflow, Feast registry) and the offline log
	@if [ -x $(PY) ]; then $(PY) -m stack clean; else rm -rf .data feature_repo/data; fi

# pytest exit code 5 means "no tests collected": that must fail, not pass silently.
define run_pytest
	@$(PY) -m pytest $(1); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: no tests were collected" >&2; exit 1; fi; exit $$rc
endef

test: install ## every test, fast layers first (unit, cli, integration, e2e); starts its own Kafka/Redis/MLflow on free ports
	$(call run_pytest,tests/unit tests/cli tests/integration tests/e2e $(PYTEST_ARGS))

test-unit: install ## unit tests only: pure logic in process, no services (about a minute)
	$(call run_pytest,tests/unit $(PYTEST_ARGS))

test-cli: install ## the CLIs run as processes on files: exit codes, reports, one-line errors (no services)
	$(call run_pytest,tests/cli $(PYTEST_ARGS))

test-integration: install ## integration and e2e tests against real services
	$(call run_pytest,tests/integration tests/e2e $(PYTEST_ARGS))

test-security: install ## the security regression suite (also part of make test)
	$(call run_pytest,tests -m security $(PYTEST_ARGS))

test-faults: install ## the fault suite: hung and killed dependencies, poison records (also part of make test)
	$(call run_pytest,tests -m faults $(PYTEST_ARGS))

bench: install ## run every benchmark (or one: make bench NAME=kafka_throughput); JSON in bench/results/
	@$(PY) -m bench $(NAME)

lint: install ## ruff and mypy
	@$(PY) -m ruff check . && $(PY) -m mypy core stack streaming drift
