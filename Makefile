# Convenience wrappers only; the scripts in scripts/ are the supported interface.
# Example: make rehearse ARGS="--out /tmp/rehearsal"

# Same default as the scripts; exported so they and the lint recipe agree.
export CEREMONY_VENV := $(abspath $(or $(CEREMONY_VENV),.venv))
VENV := $(CEREMONY_VENV)

.PHONY: setup rehearse test lint

setup:
	bash scripts/setup.sh

rehearse:
	bash scripts/rehearse.sh $(ARGS)

test:
	bash scripts/test.sh $(ARGS)

# The static checks from scripts/test.sh, without pytest.
lint: setup
	$(VENV)/bin/ruff check ceremony tests scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
