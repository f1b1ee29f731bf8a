# Two entry points for a fresh machine: `make demo` and `make test`. Each sets up .venv first if needed.
PYTHON ?= python3
# torch first and pinned: 2.13.0 is the CPU build the development machines and CI install from local disk;
# an open range would let pip fetch a multi-GB CUDA build instead. Override on your own machine, e.g.
# `make demo TORCH=torch`.
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(subst =,-,$(TORCH))

.PHONY: demo test lint setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# Restores the shipped noisy sample and scores it against the clean original.
demo: $(STAMP)
	$(BIN)/dip restore samples/astronaut_noisy25.png -o out/astronaut_restored.png \
		--reference samples/astronaut.png --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
