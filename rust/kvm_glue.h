/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Thin C glue between the Rust side of kvm-pfi and KVM's internal structures.
 *
 * Rust-for-Linux has no KVM abstraction and the kernel's bindings crate has
 * no KVM type, while these accessors are static inlines or struct fields in
 * KVM and vendor headers. Each function does one named thing; all policy
 * lives in Rust. bindgen turns this header into rust/glue_generated.rs, so it
 * uses only plain C types and opaque struct pointers.
 */
#ifndef KVM_PFI_GLUE_H
#define KVM_PFI_GLUE_H

struct kvm;
struct kvm_vcpu;

/*
 * Resolve @fd of the calling process to the struct kvm of a KVM VM file and
 * take a reference on the VM (kvm_get_kvm). Returns NULL and sets *@err to a
 * negative errno: -EBADF (@fd not open), -EINVAL (not a KVM VM file).
 */
struct kvm *kvm_pfi_vm_get_from_fd(int fd, int *err);
/* Drop a reference taken by kvm_pfi_vm_get_from_fd (may destroy the VM). */
void kvm_pfi_vm_put(struct kvm *kvm);
/* References held on the VM by anyone (VM and vCPU files, us, KVM itself). */
unsigned int kvm_pfi_vm_users(const struct kvm *kvm);
/* The PID of the VM's creator, and KVM's name of the VM ("kvm-<pid>"). */
int kvm_pfi_vm_creator_pid(const struct kvm *kvm);
const char *kvm_pfi_vm_stats_id(const struct kvm *kvm);

/* Hot path (probes): the VM of a vCPU and the vCPU's index in it. */
struct kvm *kvm_pfi_vcpu_vm(const struct kvm_vcpu *vcpu);
int kvm_pfi_vcpu_index(const struct kvm_vcpu *vcpu);

/* Which hardware virtualisation the host CPU offers KVM. */
enum kvm_pfi_glue_vendor {
	KVM_PFI_GLUE_VENDOR_NONE = 0,
	KVM_PFI_GLUE_VENDOR_SVM = 1,
	KVM_PFI_GLUE_VENDOR_VMX = 2,
};
enum kvm_pfi_glue_vendor kvm_pfi_host_vendor(void);

/*
 * GENL_MCAST_CAP_SYS_ADMIN is BIT(1), which bindgen cannot evaluate; the Rust
 * family definition is static, so it takes this copy, checked in kvm_glue.c.
 */
enum { KVM_PFI_GLUE_MCAST_CAP_SYS_ADMIN = 2 };

/* Probe registration on KVM's exported kvm_entry / kvm_exit tracepoints. */
int kvm_pfi_register_entry_probe(void *probe, void *data);
int kvm_pfi_unregister_entry_probe(void *probe, void *data);
int kvm_pfi_register_exit_probe(void *probe, void *data);
int kvm_pfi_unregister_exit_probe(void *probe, void *data);
/* Wait until no probe unregistered before this call can still be running. */
void kvm_pfi_probes_synchronize(void);

#endif /* KVM_PFI_GLUE_H */
