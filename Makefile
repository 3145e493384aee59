# fanmill: every target works on a fresh machine with only python3 (>= 3.11) and the package registries.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test lint demo bench bench-cache bench-dedup bench-crawler clean dedup-fs-tools postgres-tools

# cache/_cfollow.c, _cshared.c and _ccompact.c (the shared cache's follow loop, per-operation
# protocol, compaction copy), dedup/_cwalk.c, _cheads.c and _ctable.c (a forked walk task's
# listing, the warm head loop, the size buckets) need a C compiler and Python's headers: installed
# when missing.
# Without them the install would fall back to the Python code (2x the instructions an operation
# with 8 processes on one file), and tests/cache/test_cfollow.py, test_cshared.py and
# test_compact_copy.py, tests/dedup/test_cwalk.py, test_cheads.py and test_ctable.py would fail.
$(STAMP): pyproject.toml setup.py cache/_cfollow.c cache/_cshared.c cache/_cshared.h cache/_ccompact.c cache/_ccrc.h dedup/_cwalk.c dedup/_cdirents.h dedup/_cheads.c dedup/_cwholes.h dedup/_ctable.c
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "fanmill needs Python >= 3.11")'
	@command -v cc >/dev/null && [ -e "$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ] || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev python3-dev; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# pytest exits 5 when it collects no test; make treats that as a failure, so "no tests" never passes.
# The wrapper starts a throwaway PostgreSQL cluster (FANMILL_TEST_PG) and removes it after pytest,
# also when a test fails or on Ctrl-C.
test: lint dedup-fs-tools postgres-tools
	$(PY) -m fixtures.postgres run -- $(PY) -m pytest -p no:cacheprovider

# dedup's extent tests loop-mount btrfs and XFS images they make (as root): install the mkfs tools.
dedup-fs-tools:
	@command -v mkfs.btrfs >/dev/null && command -v mkfs.xfs >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends btrfs-progs xfsprogs; }

# The tests run their own PostgreSQL server: install Debian's when fixtures.postgres finds none (the
# module is stdlib-only, so this needs no venv). The package creates a "main" cluster and starts it;
# a policy-rc.d answering 101 (action forbidden) for the install keeps that one stopped, unused.
postgres-tools:
	@$(PYTHON) -m fixtures.postgres bindir >/dev/null 2>&1 || { \
	  policy=/usr/sbin/policy-rc.d; ours=; \
	  if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' >$$policy && chmod +x $$policy && ours=1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; \
	  status=$$?; if [ -n "$$ours" ]; then rm -f $$policy; fi; [ $$status -eq 0 ] || exit $$status; \
	  $(PYTHON) -m fixtures.postgres bindir; }

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
	$(PY) -m bench.crawler.pg_scale
	$(PY) -m bench.crawler.workers

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis .ruff_cache
