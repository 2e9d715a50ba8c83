// SPDX-License-Identifier: GPL-2.0
/*
 * Thin C glue between kvm-pfi's Rust code and KVM internals: see kvm_glue.h.
 */
#include <linux/file.h>
#include <linux/kvm_host.h>
#include <linux/module.h>
#include <linux/tracepoint.h>
#include <asm/cpufeature.h>

#include <net/genetlink.h>

#include "kvm_glue.h"

static_assert(KVM_PFI_GLUE_MCAST_CAP_SYS_ADMIN == GENL_MCAST_CAP_SYS_ADMIN);

/*
 * Exported by kvm.ko with EXPORT_TRACEPOINT_SYMBOL_GPL (arch/x86/kvm/x86.c);
 * declared in KVM's private arch/x86/kvm/trace.h, hence declared here.
 */
extern struct tracepoint __tracepoint_kvm_entry;
extern struct tracepoint __tracepoint_kvm_exit;

/*
 * KVM's own file_is_kvm() is internal to KVM. A VM file is the anon inode
 * KVM_CREATE_VM makes with anon_inode_getfile("kvm-vm", &kvm_vm_fops, kvm,
 * O_RDWR), and kvm_init() sets kvm_vm_fops.owner to the vendor module that
 * initialised KVM. Both together identify it: another module would have to
 * fake both the name and one of these owners.
 */
static bool file_is_kvm_vm(struct file *file)
{
	static const char *const kvm_owners[] = { "kvm_amd", "kvm_intel", "kvm" };
	const struct module *owner = file->f_op->owner;
	int i;

	if (strcmp(file->f_path.dentry->d_name.name, "kvm-vm"))
		return false;
	/* With KVM built in there is no owner: the name has to do. */
	if (!owner)
		return true;
	for (i = 0; i < ARRAY_SIZE(kvm_owners); i++)
		if (!strcmp(owner->name, kvm_owners[i]))
			return true;
	return false;
}

struct kvm *kvm_pfi_vm_get_from_fd(int fd, int *err)
{
	struct file *file = fget(fd);
	struct kvm *kvm;

	if (!file) {
		*err = -EBADF;
		return NULL;
	}
	if (!file_is_kvm_vm(file)) {
		fput(file);
		*err = -EINVAL;
		return NULL;
	}
	kvm = file->private_data;
	/* The open file holds a reference, so the VM cannot be going away. */
	kvm_get_kvm(kvm);
	fput(file);
	*err = 0;
	return kvm;
}

void kvm_pfi_vm_put(struct kvm *kvm)
{
	kvm_put_kvm(kvm);
}

unsigned int kvm_pfi_vm_users(const struct kvm *kvm)
{
	return refcount_read(&kvm->users_count);
}

int kvm_pfi_vm_creator_pid(const struct kvm *kvm)
{
	return kvm->userspace_pid;
}

const char *kvm_pfi_vm_stats_id(const struct kvm *kvm)
{
	return kvm->stats_id;
}

struct kvm *kvm_pfi_vcpu_vm(const struct kvm_vcpu *vcpu)
{
	return vcpu->kvm;
}

int kvm_pfi_vcpu_index(const struct kvm_vcpu *vcpu)
{
	return vcpu->vcpu_idx;
}

enum kvm_pfi_glue_vendor kvm_pfi_host_vendor(void)
{
	if (boot_cpu_has(X86_FEATURE_SVM))
		return KVM_PFI_GLUE_VENDOR_SVM;
	if (boot_cpu_has(X86_FEATURE_VMX))
		return KVM_PFI_GLUE_VENDOR_VMX;
	return KVM_PFI_GLUE_VENDOR_NONE;
}

int kvm_pfi_register_entry_probe(void *probe, void *data)
{
	return tracepoint_probe_register(&__tracepoint_kvm_entry, probe, data);
}

int kvm_pfi_unregister_entry_probe(void *probe, void *data)
{
	return tracepoint_probe_unregister(&__tracepoint_kvm_entry, probe, data);
}

int kvm_pfi_register_exit_probe(void *probe, void *data)
{
	return tracepoint_probe_register(&__tracepoint_kvm_exit, probe, data);
}

int kvm_pfi_unregister_exit_probe(void *probe, void *data)
{
	return tracepoint_probe_unregister(&__tracepoint_kvm_exit, probe, data);
}

void kvm_pfi_probes_synchronize(void)
{
	tracepoint_synchronize_unregister();
}
