# Two commands do everything: `make run` (set up, then the offline quickstart) and `make test`.
# Setup makes .venv with the CPU build of torch 2.13.0 first, so no dependency can pull a multi-GB CUDA build,
# then installs edgesmith with the versions in constraints.txt (the set CI tests).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: setup run sst2 test bench
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) torch==2.13.0
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
