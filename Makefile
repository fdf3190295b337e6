# Two commands do all the set-up on a fresh machine: `make test` and `make demo`.
PY := .venv/bin/python
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: setup test demo lint bench toy-world clean-host

setup:
	bash scripts/setup_env.sh

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: setup
	$(PY) -m scripts.demo $(DEMO_ARGS)

lint: setup
	$(PY) -m ruff check .

bench: setup
	$(PY) bench/generate.py

clean-host:
	rm -rf .host .venv
