# fanmill: every target works on a fresh machine with only python3 (>= 3.11) and the package registries.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test lint demo bench bench-cache bench-dedup bench-crawler clean dedup-fs-tools

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "fanmill needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# pytest exits 5 when it collects no test; make treats that as a failure, so "no tests" never passes.
test: lint dedup-fs-tools
	$(PY) -m pytest -p no:cacheprovider

# dedup's extent tests loop-mount btrfs and XFS images they make (as root): install the mkfs tools.
dedup-fs-tools:
	@command -v mkfs.btrfs >/dev/null && command -v mkfs.xfs >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends btrfs-progs xfsprogs; }

demo: $(STAMP)
	$(PY) -m fixtures.demo

bench: bench-cache bench-dedup bench-crawler

bench-cache: $(STAMP)
	$(PY) -m bench.cache

bench-dedup: $(STAMP)
	$(PY) -m bench.dedup
	$(PY) -m bench.dedup.realtrees
	$(PY) -m bench.dedup.beyond

bench-crawler: $(STAMP)
	$(PY) -m bench.crawler

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis .ruff_cache
