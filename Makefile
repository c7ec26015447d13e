# One entry point for people and CI. Every target creates the environment when missing.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo .venv-tools/bin/uv)
VENV := .venv
RUN := $(UV) run --frozen

.PHONY: install test test-faults lint bench run flower sandbox worker beat webhook clean

$(UV):
	python3 -m venv .venv-tools && .venv-tools/bin/pip install --quiet uv==0.13.9

$(VENV)/.installed: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen
	@touch $@

install: $(VENV)/.installed  ## create .venv from the lock file

TEST_WORKERS ?= 4

test: install  ## the whole suite: TEST_WORKERS processes side by side, then the figures alone
	@status=0; \
	$(RUN) pytest -q -n $(TEST_WORKERS) -m "not serial" --durations=25 || status=$$?; \
	$(RUN) pytest -q -p no:xdist -m serial || status=$$((status ? status : $$?)); \
	exit $$status

test-faults: install  ## only the fault-injection suite
	$(RUN) pytest -q -m faults

lint: install  ## ruff and mypy (strict on contract/, core/, worker/, producers/, console/, scripts/)
	$(RUN) ruff check contract core worker producers console sandbox tests bench scripts
	$(RUN) mypy

bench: install  ## side-by-side benchmark against the sandbox at real limits
	$(RUN) python -m bench.run

run: install  ## the demo on embedded defaults (RUN_ONCE=1 stops after the summary)
	$(RUN) python -m console.demo

flower: install  ## Flower on :5555, task arguments masked
	$(RUN) celery -A worker flower --address=127.0.0.1 --port=5555 $(if $(FLOWER_AUTH),--basic-auth=$(FLOWER_AUTH))

sandbox: install
	$(RUN) klaviyo-export sandbox --host 127.0.0.1 --port 8787

worker: install
	$(RUN) celery -A worker worker -Q realtime,backfill,maintenance -c 2 -E --without-gossip --without-mingle

beat: install
	$(RUN) celery -A worker beat

webhook: install
	$(RUN) klaviyo-export webhook --host 127.0.0.1 --port 8000

clean:
	rm -rf $(VENV) .venv-tools .mypy_cache .ruff_cache .pytest_cache
