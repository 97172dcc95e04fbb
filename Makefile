# tcpfsm — every target installs what it needs (a fresh Debian machine as root is enough).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_CAPTURE ?= captures/kernel/concurrent_mixed.pcap
FUZZ_SECONDS ?= 600
FUZZ_TEST_SECONDS ?= 60
# make test fuzzes from a fixed seed, so a gate that fails fails again on replay (make fuzz draws a new one)
FUZZ_TEST_SEED ?= 1

.PHONY: demo test venv sysdeps captures crafted bench bench-big bench-scale bench-live fuzz clean

venv: $(STAMP)
# every compiled kernel (tcpfsm/_kernels.py KERNELS): an edited one is rebuilt, not refused as stale
KERNEL_SOURCES := tcpfsm/capture/_decode.py tcpfsm/fsm/machine.py tcpfsm/track/_runs.py \
	tcpfsm/path/_seqan.py tcpfsm/render/_emit.py tcpfsm/detect/_piles.py \
	tcpfsm/detect/_tally.py
$(STAMP): pyproject.toml setup.py tcpfsm/_kernels.py $(KERNEL_SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=77"
	$(PY) -m pip install -q -e '.[test]'
	@# byte-compiled once, as a wheel install would be: with PYTHONDONTWRITEBYTECODE set (as on our machines)
	@# every run would otherwise compile the package's sources again (~0.1 s of each command's start-up)
	$(PY) -m compileall -q tcpfsm >/dev/null
	touch $(STAMP)

# Debian packages the tests and recorder use: tcpdump (real captures, live backend), iproute2 and
# iptables (namespaces, drops), tshark (the tshark engine), chromium (opens the HTML report headless).
# Installed only when missing.
sysdeps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v tcpdump >/dev/null || missing="$$missing tcpdump"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v iptables >/dev/null || missing="$$missing iptables"; \
	command -v tshark >/dev/null || missing="$$missing tshark"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# The story of one capture on one screen: facts, findings, piles, the connections behind them, one ladder.
# README.md's first example is exactly this output (tests/test_demo.py).
demo: venv
	$(VENV)/bin/tcpfsm analyze $(DEMO_CAPTURE) --format brief --width 120

# The optional extras the tests exercise: tcpfsm[arrow] (pyarrow, pandas: --format parquet, to_pandas),
# duckdb, which reads the Parquet back, and tcpfsm[dask] (--workers / --scheduler; the tests start a real
# local Dask cluster). Installed once (stamp); their tests skip if this failed.
EXTRAS := $(VENV)/.extras
$(EXTRAS): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[test,arrow,dask]' duckdb && touch $(EXTRAS) || echo "optional extras not installed"

test: venv sysdeps $(EXTRAS)
	$(PY) -m pytest -q
	TCPFSM_PURE=1 $(PY) -m pytest -q tests/test_compiled.py tests/test_compiled_machine.py
	$(PY) fuzz/run.py --seconds $(FUZZ_TEST_SECONDS) --seed $(FUZZ_TEST_SEED)

# Structure-aware fuzzing (fuzz/run.py) for FUZZ_SECONDS: mutated captures through every engine and
# command, in process and through the CLI; a shrunk reproducer per distinct failure in fuzz/out/failures/.
fuzz: venv sysdeps
	$(PY) fuzz/run.py --seconds $(FUZZ_SECONDS)

# Re-record the kernel scenarios (root: network namespaces, tcpdump, iptables).
captures: venv sysdeps
	$(PY) captures/record.py --out captures/kernel

# Re-record the kernel-truth matrix (root: three namespaces per cell, an AF_PACKET delay line), then
# rescore it: captures/matrix/known_misses.json lists what the current engine gets wrong.
.PHONY: matrix
matrix: venv
	$(PY) captures/matrix.py --out captures/matrix
	$(PY) captures/matrix_score.py --dir captures/matrix --write-known-misses

crafted: venv
	$(PY) captures/craft.py
	$(PY) captures/craft_links.py

# The bench capture against tshark, tcptrace and argus (bench/run.py), then the load figures
# (bench/load.py: a spoofed SYN flood and never-closing connections, generated; 200,000 SYNs and 20,000
# connections by default, the full size with BENCH_LOAD_ARGS="--syns 2000000 --conns 200000").
bench: venv sysdeps
	@missing=""; \
	command -v tshark >/dev/null || missing="$$missing tshark"; \
	command -v tcptrace >/dev/null || missing="$$missing tcptrace"; \
	command -v argus >/dev/null || missing="$$missing argus-server"; \
	command -v ra >/dev/null || missing="$$missing argus-client"; \
	[ -x /usr/bin/time ] || missing="$$missing time"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } \
	    || echo "bench: could not install$$missing; run.py skips what is missing"; \
	fi
	$(PY) -m compileall -q tcpfsm >/dev/null
	$(PY) bench/make_capture.py
	$(PY) bench/run.py $(BENCH_ARGS)
	$(PY) bench/load.py $(BENCH_LOAD_ARGS)

# The >= 4 GB capture (35 shifted copies of the bench capture) and tcpfsm's peak RSS on it.
bench-big: venv sysdeps
	$(PY) bench/make_capture.py
	$(PY) bench/make_big.py
	$(PY) bench/big_rss.py $(BENCH_BIG_ARGS)

# Scale figures of the Dask run (issue 11, tcpfsm.distributed): the bench-big capture cut into 1 GB parts
# (editcap), analysed by one process and on local Dask clusters of 1 and 2 workers: wall time, peak memory
# per worker (bench/scale.py). BENCH_SCALE_ARGS="--capture bench/out/bench.pcap" for the small capture.
bench-scale: venv sysdeps $(EXTRAS)
	$(PY) bench/make_capture.py
	$(PY) bench/make_big.py
	$(PY) bench/scale.py $(BENCH_SCALE_ARGS)

# Live capture: a bounded burst per fast backend, and a 10-minute memory soak (root).
bench-live: venv sysdeps
	$(PY) bench/live_burst.py
	$(PY) bench/live_soak.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
