# Two commands do all the set-up on a fresh machine: `make test` and `make demo`.
PY := .venv/bin/python
PYTEST_ARGS ?=
DEMO_ARGS ?=
# The toy world's base model for `make demo` and `make toy-world`: unet (default) or dit (its FLUX-architecture DiT).
BASE ?=

.PHONY: setup test demo lint bench toy-world clean-host gpu-check gpu-pack node-files

setup:
	bash scripts/setup_env.sh

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: setup
	$(PY) -m scripts.demo $(if $(BASE),--base $(BASE)) $(DEMO_ARGS)

lint: setup
	$(PY) -m ruff check .

# Everything written from the node declarations: locales/en, the help pages (web/docs/), the schema snapshot.
node-files: setup
	$(PY) -m scripts.locales
	$(PY) -m scripts.node_docs
	$(PY) -m scripts.node_schema

bench: setup
	$(PY) bench/generate.py

# The GPU check (bench/gpu.py) on this machine's CUDA GPU; GPU_ARGS="--tiny" runs it on the CPU at tiny size.
gpu-check: setup
	$(PY) bench/gpu.py $(GPU_ARGS)

# Wheels + ComfyUI source for a GPU machine without network (README, "Speed on a GPU").
gpu-pack: setup
	$(PY) scripts/pack_gpu.py $(PACK_ARGS)

# The independent base stages run as two one-thread processes side by side (they write different files
# into one folder); then the base UNet, the HyperLoRA and the evaluation. One part alone:
# `python -m hyperlora_core.toy.build --stages hyper,eval`. BASE=dit: the DiT's base, HyperLoRA and evaluation
# (`--base dit`) on the world's shared parts (judges, analogues, VAE), which must be there.
toy-world: setup
ifeq ($(BASE),dit)
	$(PY) -m hyperlora_core.toy.build --base dit --stages base,hyper,eval $(TOY_ARGS)
else
	( $(PY) -m hyperlora_core.toy.build --threads 1 --stages judge,base_judge,vae $(TOY_ARGS) & \
	  $(PY) -m hyperlora_core.toy.build --threads 1 --stages arcface,clip $(TOY_ARGS); b=$$?; wait $$!; a=$$?; \
	  [ $$a -eq 0 ] && [ $$b -eq 0 ] ) && \
	$(PY) -m hyperlora_core.toy.build --stages base,hyper,eval $(TOY_ARGS)
endif

clean-host:
	rm -rf .host .venv
