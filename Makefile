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

# A clang-built tree (the test kernel is one: KASAN with Rust needs clang)
# builds its modules with the same LLVM, found from its CONFIG_CLANG_VERSION
# (190107: /usr/lib/llvm-19/bin/, else clang-19 and friends on PATH).
KDIR_CLANG_MAJOR := $(shell sed -n 's/^CONFIG_CLANG_VERSION=\([1-9][0-9]*\)[0-9]\{4\}$$/\1/p' $(KDIR)/.config 2>/dev/null)
LLVM ?= $(if $(KDIR_CLANG_MAJOR),$(firstword $(wildcard /usr/lib/llvm-$(KDIR_CLANG_MAJOR)/bin/) -$(KDIR_CLANG_MAJOR)))
KMAKE = $(MAKE) -C $(KDIR) M=$(CURDIR) RUSTC=$(RUSTC) BINDGEN=$(BINDGEN) \
	LIBCLANG_PATH=$(LIBCLANG_PATH) $(if $(LLVM),LLVM=$(LLVM))

# Installation (`make install`): the module into /lib/modules/$(KVER)/updates
# (KVER: the release of KDIR, i.e. $(uname -r) when KDIR is that kernel's
# build tree), the tool, its man pages, completions and systemd unit under
# $(PREFIX); DESTDIR for staging.
PREFIX ?= /usr/local
DESTDIR ?=
KVER ?= $(shell $(MAKE) -s -C $(KDIR) kernelrelease 2>/dev/null)
TOOL_BIN = $(CARGO_TARGET_DIR)/release/kvm-pfi

.PHONY: all help deps kernel qemu guest module tool selftests test unit-test lint check-imports format-test packaging-test install vm-test vmx-test e2e demo bench clean

all: module tool

help:
	@echo "make deps       install the toolchain (Debian packages, bindgen, virtme-ng)"
	@echo "make kernel     fetch and build the test kernel in $(KVM_PFI_CACHE)"
	@echo "make qemu       fetch, patch and build the emulator the test VM runs under"
	@echo "make guest      build the real-guest tests' Linux guest (kernel + initramfs)"
	@echo "make module     build kvm_pfi.ko against KDIR (default: the test kernel)"
	@echo "make tool       build the kvm-pfi command-line tool"
	@echo "make selftests  build the kselftest suite"
	@echo "make vm-test    the suite in a VM on AMD SVM (QEMU TCG), with the real guest's main case"
	@echo "make vmx-test   the suite in a VM on Intel VMX (Bochs)"
	@echo "make test       everything above, host unit tests, clippy, receiver and packaging checks, then the suite on SVM"
	@echo "make install    module, tool, man pages, completions, systemd unit (PREFIX, DESTDIR, KVER)"
	@echo "make e2e        every real Linux guest case (make test runs the main one), then the boot figures over 10 boots"
	@echo "make demo       boot the test VM, load a rule, detect it in a swapped-out page kvm-pfi brings back"
	@echo "make bench      overhead figures of the probes and the cost of signature scans (ratios)"
	@echo "make clean      remove build products from the repository"

deps:
	scripts/toolchain.sh

kernel: deps
	scripts/kernel.sh

qemu: deps
	scripts/qemu.sh

guest: kernel
	scripts/real-guest.sh --initramfs

module:
	$(KMAKE) modules

tool:
	$(CARGO) build --release --locked -p kvm-pfi

selftests:
	$(MAKE) -C selftests KDIR=$(KDIR) OUT=$(KVM_PFI_TESTS) KVM_ST_OUT=$(KVM_PFI_SELFTESTS_DIR)/kvm-lib

unit-test: check-imports
	$(CARGO) test --release --locked --workspace

# clippy on every crate, warnings as errors: the workspace (pfi_core with
# and without its host feature, the tool), and the module's kernel-side Rust,
# which Kbuild builds with the kernel's rustc: Kbuild's CLIPPY=1 runs the
# clippy of that same rustc (Debian's rust-web-clippy beside rustc-web) with
# the kernel's own lint set. Its build is the module's build, so a later
# `make module` has nothing to do.
CLIPPY_DRIVER ?= $(dir $(RUSTC))clippy-driver
lint:
	$(CARGO) clippy --release --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy --release --locked -p pfi_core --all-targets --features text -- -D warnings
	rm -f rust/kvm_pfi.o
	$(KMAKE) CLIPPY=1 CLIPPY_DRIVER=$(CLIPPY_DRIVER) KRUSTFLAGS=-Dwarnings modules

# The module's import graph has no cycle (Documentation/design.rst).
check-imports:
	python3 scripts/import-graph.py --self-test
	python3 scripts/import-graph.py

# watch --format journald/syslog/ocsf against systemd-journald, rsyslogd and
# the OCSF schema, on the host (root: a private mount namespace for journald).
format-test: tool
	scripts/format-test.sh

# make install into a staging folder, and `dkms build` against KDIR.
packaging-test: module tool
	scripts/packaging-test.sh

install: module tool
	install -D -m 644 kvm_pfi.ko $(DESTDIR)/lib/modules/$(KVER)/updates/kvm_pfi.ko
	install -D -m 755 $(TOOL_BIN) $(DESTDIR)$(PREFIX)/bin/kvm-pfi
	$(TOOL_BIN) generate man $(DESTDIR)$(PREFIX)/share/man/man1
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
		$(DESTDIR)$(PREFIX)/share/zsh/site-functions \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d \
		$(DESTDIR)$(PREFIX)/lib/systemd/system \
		$(DESTDIR)$(PREFIX)/share/doc/kvm-pfi/examples
	$(TOOL_BIN) generate completions bash >$(DESTDIR)$(PREFIX)/share/bash-completion/completions/kvm-pfi
	$(TOOL_BIN) generate completions zsh >$(DESTDIR)$(PREFIX)/share/zsh/site-functions/_kvm-pfi
	$(TOOL_BIN) generate completions fish >$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/kvm-pfi.fish
	sed 's|@BINDIR@|$(PREFIX)/bin|g' tools/kvm-pfi/dist/kvm-pfi-watch.service \
		>$(DESTDIR)$(PREFIX)/lib/systemd/system/kvm-pfi-watch.service
	sed 's|@BINDIR@|$(PREFIX)/bin|g' tools/kvm-pfi/dist/kvm-pfi-watch-syslog.conf \
		>$(DESTDIR)$(PREFIX)/share/doc/kvm-pfi/examples/kvm-pfi-watch-syslog.conf
	install -m 644 tools/kvm-pfi/dist/rsyslog-kvm-pfi.conf $(DESTDIR)$(PREFIX)/share/doc/kvm-pfi/examples/
	$(if $(DESTDIR),,depmod -a $(KVER))

vm-test: module tool selftests guest
	scripts/vm-test.sh

# The same suite on Intel VMX, under Bochs (Documentation/testing.rst).
vmx-test: deps module tool selftests
	scripts/vmx-test.sh

# The one command CI and newcomers run: sets up what is missing, then tests.
# The VM stages, AMD SVM (QEMU) and Intel VMX (Bochs), run side by side
# (one emulator thread each); each keeps its KTAP in RESULTS, and the last
# line is their sum (Documentation/testing.rst).
RESULTS = $(KVM_PFI_TESTS)/results
test: kernel qemu guest
	rm -rf $(RESULTS) && mkdir -p $(RESULTS)
	$(MAKE) unit-test
	$(MAKE) lint
	$(MAKE) format-test
	$(MAKE) packaging-test
	$(MAKE) module tool selftests
	scripts/vm-stages.sh $(RESULTS)
	@scripts/test-totals.sh $(RESULTS)/svm.ktap $(RESULTS)/vmx.ktap

# The real-guest cases in full, and the boot figures (Documentation/testing.rst).
e2e: kernel qemu guest
	$(MAKE) module tool selftests
	scripts/real-guest.sh
	scripts/real-guest.sh --boots 10

demo: kernel qemu
	$(MAKE) module tool selftests
	scripts/demo.sh

bench: kernel qemu
	$(CARGO) run --release --locked -q -p kvm-pfi --example scan_throughput
	$(MAKE) module tool selftests
	scripts/bench.sh
	KVM_PFI_VMX_RUN=bench scripts/vmx-test.sh

clean:
	-$(KMAKE) clean 2>/dev/null
	-$(MAKE) -C selftests clean KDIR=$(KDIR) OUT=$(KVM_PFI_TESTS) 2>/dev/null
