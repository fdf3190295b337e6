# Two commands do all the set-up on a fresh machine: `make test` and `make demo`.
PY := .venv/bin/python
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: setup test demo lint bench toy-world clean-host gpu-check gpu-pack

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

# The GPU check (bench/gpu.py) on this machine's CUDA GPU; GPU_ARGS="--tiny" runs it on the CPU at tiny size.
gpu-check: setup
	$(PY) bench/gpu.py $(GPU_ARGS)

# Wheels + ComfyUI source for a GPU machine without network (README, "Speed on a GPU").
gpu-pack: setup
	$(PY) scripts/pack_gpu.py $(PACK_ARGS)

toy-world: setup
	$(PY) -m hyperlora_core.toy.build $(TOY_ARGS)

clean-host:
	rm -rf .host .venv
