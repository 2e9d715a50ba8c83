#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Install the host toolchain that builds a Rust-enabled kernel, the module
# and the selftests, and runs them under virtme-ng and Bochs. Idempotent:
# each step is skipped when already done.
source "$(dirname "$0")/common.sh"

APT_PACKAGES=(
	build-essential flex bison bc libelf-dev libssl-dev cpio kmod
	python3-venv rsync zstd xz-utils
	qemu-system-x86 busybox-static
	"rustc-web" "rust-web-src"
	# clippy of the same rustc, for the module's kernel-side Rust (make lint).
	"rust-web-clippy"
	"libclang-${LLVM_VERSION}-dev" "clang-${LLVM_VERSION}" "lld-${LLVM_VERSION}"
	# llvm-ar, llvm-nm, llvm-objcopy...: the test kernel is built with LLVM=.
	"llvm-${LLVM_VERSION}"
	libmnl-dev pkg-config python3-yaml python3-jsonschema uuid-dev udev
	rsyslog dkms
	# pahole: the test kernel's BTF blob from its DWARF (selftests/linux_walk.py).
	dwarves
	# The patched QEMU (scripts/qemu.sh): its source package, meson and
	# ninja, the libraries of an x86_64 system emulator, and virtfs (9p,
	# which virtme-ng's --force-9p needs).
	dpkg-dev meson ninja-build libglib2.0-dev libpixman-1-dev libfdt-dev zlib1g-dev
	libcap-ng-dev libattr1-dev
	# The VMX stage (scripts/vmx-test.sh): Bochs, its BIOS images, and an
	# ISO that isolinux boots. The terminal GUI stands in for the one
	# Bochs depends on, which would otherwise be the wxWidgets/GTK one;
	# the stage uses the RFB display built into bochs itself.
	bochs bochs-term bochsbios vgabios isolinux syslinux-common xorriso
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	log "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$KVM_PFI_CACHE"
if ! bindgen --version 2>/dev/null | grep -q "$BINDGEN_VERSION"; then
	log "building bindgen-cli $BINDGEN_VERSION"
	cargo install --locked --quiet --root "$TOOLS_DIR" bindgen-cli --version "$BINDGEN_VERSION"
fi

if ! "$VENV_DIR/bin/vng" --version 2>/dev/null | grep -q "$VIRTME_NG_VERSION"; then
	log "installing virtme-ng $VIRTME_NG_VERSION into $VENV_DIR"
	/usr/bin/python3 -m venv "$VENV_DIR"
	"$VENV_DIR/bin/pip" install -q "virtme-ng==$VIRTME_NG_VERSION"
fi

# The OCSF schema (its JSON, not the models) for selftests/formats_test.py.
if ! "$VENV_DIR/bin/pip" show pydantic-ocsf 2>/dev/null | grep -q "^Version: $PYDANTIC_OCSF_VERSION\$"; then
	log "installing the OCSF schema (pydantic-ocsf $PYDANTIC_OCSF_VERSION, no dependencies)"
	"$VENV_DIR/bin/pip" install -q --no-deps "pydantic-ocsf==$PYDANTIC_OCSF_VERSION"
fi

log "toolchain ready: $($KVM_PFI_RUSTC --version), bindgen $(bindgen --version | awk '{print $2}'), vng $("$VENV_DIR/bin/vng" --version 2>&1 | awk '{print $2}')"
