# Two commands do everything: `make run` (set up, then the offline quickstart) and `make test`.
# Setup makes .venv with torch 2.13.0 first, so no dependency can pull another torch, then installs edgesmith with
# the versions in constraints.txt (the set CI tests). Where pip's own configuration offers the CPU build (as on the
# machines this project is built on, from a local wheel folder), that is what it installs. On a machine whose pip
# reaches PyPI's default torch (on Linux x86_64 a CUDA build of several GB), name the CPU index:
#   make setup TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
TORCH_PIP_ARGS ?=

.PHONY: setup run sst2 test bench
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) torch==2.13.0 $(TORCH_PIP_ARGS)
	$(PIP) -c constraints.txt -e ".[test,datasets]"
	touch $@

run: setup
	$(VENV)/bin/edgesmith run

sst2: setup
	$(VENV)/bin/edgesmith run recipes/sst2.yaml

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PIP) -c constraints.txt -e ".[bench]"
	$(PY) benchmarks/compare.py --jobs 2
