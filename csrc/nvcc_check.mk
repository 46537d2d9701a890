# `make nvcc-check`: compile every csrc/*.cu on its own with nvcc, without PyTorch, for the
# architectures we ship (sm_80, sm_90). The .cu files include only CUDA toolkit headers and
# headers under csrc/, so this works on any machine with nvcc, GPU or not. Objects go to a
# temporary directory that is removed afterwards. Skips (exit 0) only when nvcc is absent.
#
# Included by the top-level Makefile; paths are relative to this file's directory.

NVCC ?= nvcc
NVCC_CHECK_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
NVCC_CHECK_SOURCES := $(sort $(wildcard $(NVCC_CHECK_DIR)/*.cu))
NVCC_CHECK_FLAGS ?= -std=c++17 -I$(NVCC_CHECK_DIR) \
	-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90

.PHONY: nvcc-check
nvcc-check:
	@if ! command -v $(NVCC) >/dev/null 2>&1; then \
		echo "nvcc-check: SKIPPED: '$(NVCC)' not found on PATH (install the CUDA toolkit to compile $(NVCC_CHECK_DIR)/*.cu)"; \
		exit 0; \
	fi; \
	if [ -z "$(NVCC_CHECK_SOURCES)" ]; then \
		echo "nvcc-check: FAILED: no .cu files in $(NVCC_CHECK_DIR)/" >&2; exit 1; \
	fi; \
	tmp=$$(mktemp -d) || exit 1; trap 'rm -rf "$$tmp"' EXIT; \
	echo "nvcc-check: $$($(NVCC) --version | tail -n 1)"; \
	failed=""; \
	for src in $(NVCC_CHECK_SOURCES); do \
		echo "nvcc-check: $(NVCC) $(NVCC_CHECK_FLAGS) -c $$src"; \
		if ! $(NVCC) $(NVCC_CHECK_FLAGS) -c "$$src" -o "$$tmp/$$(basename "$$src").o"; then \
			failed="$$failed $$src"; \
		fi; \
	done; \
	if [ -n "$$failed" ]; then \
		echo "nvcc-check: FAILED to compile:$$failed" >&2; exit 1; \
	fi; \
	echo "nvcc-check: OK ($(words $(NVCC_CHECK_SOURCES)) file(s), sm_80 + sm_90)"
