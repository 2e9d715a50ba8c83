# SPDX-License-Identifier: GPL-2.0
#
# kvm-pfi: top-level entry points. `make help` lists them.
#
# Everything built for the project (toolchain pieces, the test kernel, cargo
# targets) lives in $(KVM_PFI_CACHE), outside the repository.

# Keep the suite's closing "N passed, M failed" line last.
MAKEFLAGS += --no-print-directory

KVM_PFI_CACHE ?= $(if $(XDG_CACHE_HOME),$(XDG_CACHE_HOME),$(HOME)/.cache)/kvm-pfi
export KVM_PFI_CACHE

# The kernel tree to build the module against. Default: the test kernel the
# scripts build; bring your own Rust-enabled build tree with KDIR=...
KDIR ?= $(KVM_PFI_CACHE)/build
RUSTC ?= $(if $(wildcard /usr/bin/rustc),/usr/bin/rustc,rustc)
LIBCLANG_PATH ?= /usr/lib/llvm-19/lib
BINDGEN ?= $(firstword $(wildcard $(KVM_PFI_CACHE)/tools/bin/bindgen) bindgen)
export CARGO_TARGET_DIR ?= $(KVM_PFI_CACHE)/target
# Which checkout builds: the tool's build script regenerates its ABI
# bindings when this changes (checkouts share CARGO_TARGET_DIR).
export KVM_PFI_SOURCE_DIR := $(CURDIR)
# Selftest binaries: per kernel build (they link that tree's KVM library,
# built once in kvm-lib/) and per checkout (two clones must not share them).
KVM_PFI_SELFTESTS_DIR = $(KVM_PFI_CACHE)/selftests/$(notdir $(realpath $(KDIR)))
export KVM_PFI_TESTS ?= $(KVM_PFI_SELFTESTS_DIR)/$(shell echo $(CURDIR) | sha1sum | cut -c1-8)
CARGO ?= cargo

KMAKE = $(MAKE) -C $(KDIR) M=$(CURDIR) RUSTC=$(RUSTC) BINDGEN=$(BINDGEN) \
	LIBCLANG_PATH=$(LIBCLANG_PATH)

.PHONY: all help deps kernel module tool selftests test unit-test check-imports vm-test demo bench nested-guest clean

all: module tool

help:
	@echo "make deps       install the toolchain (Debian packages, bindgen, virtme-ng)"
	@echo "make kernel     fetch and build the test kernel in $(KVM_PFI_CACHE)"
	@echo "make module     build kvm_pfi.ko against KDIR (default: the test kernel)"
	@echo "make tool       build the kvm-pfi command-line tool"
	@echo "make selftests  build the kselftest suite"
	@echo "make test       everything above, host unit tests, then the suite in a VM"
	@echo "make demo       boot the test VM, load a rule, detect it in a swapped-out page kvm-pfi brings back"
	@echo "make bench      overhead figures of the probes and the cost of signature scans (ratios)"
	@echo "make nested-guest  try a real Linux guest in the test VM (does not boot under TCG yet)"
	@echo "make clean      remove build products from the repository"

deps:
	scripts/toolchain.sh

kernel: deps
	scripts/kernel.sh

module:
	$(KMAKE) modules

tool:
	$(CARGO) build --release --locked -p kvm-pfi

selftests:
	$(MAKE) -C selftests KDIR=$(KDIR) OUT=$(KVM_PFI_TESTS) KVM_ST_OUT=$(KVM_PFI_SELFTESTS_DIR)/kvm-lib

unit-test: check-imports
	$(CARGO) test --release --locked --workspace

# The module's import graph has no cycle (Documentation/design.rst).
check-imports:
	python3 scripts/import-graph.py --self-test
	python3 scripts/import-graph.py

vm-test: module tool selftests
	scripts/vm-test.sh

# The one command CI and newcomers run: sets up what is missing, then tests.
test: kernel
	$(MAKE) unit-test
	$(MAKE) vm-test

demo: kernel
	$(MAKE) module tool selftests
	scripts/demo.sh

# Reproduces why real-guest tests are not in `make test` yet (testing.rst).
nested-guest: kernel
	scripts/nested-guest.sh

bench: kernel
	$(CARGO) run --release --locked -q -p pfi_core --features text --example scan_throughput
	$(MAKE) module selftests
	scripts/bench.sh

clean:
	-$(KMAKE) clean 2>/dev/null
	-$(MAKE) -C selftests clean KDIR=$(KDIR) OUT=$(KVM_PFI_TESTS) 2>/dev/null
