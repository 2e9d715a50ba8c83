// SPDX-License-Identifier: GPL-2.0
/*
 * Thin C glue between kvm-pfi's Rust code and KVM internals: see kvm_glue.h.
 */
#include <linux/file.h>
#include <linux/kvm_host.h>
#include <linux/module.h>
#include <linux/tracepoint.h>
#include <asm/cpufeature.h>
#include <asm/svm.h>
#include <asm/vmx.h>
#include <asm/kvm_page_track.h>
#include <linux/slab.h>
#include <linux/anon_inodes.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>
#include <linux/kthread.h>
#include <linux/sched/mm.h>
#include <asm/pkru.h>

#include <net/genetlink.h>

/*
 * KVM's own private headers, from the tree the module is built against
 * (Kbuild adds arch/x86 to the include path): the vendor vCPU structures and
 * the tracepoint declarations. The glue reads those structures through the
 * kernel's own definitions, so a kernel whose layout differs builds a
 * different glue or none, never one that guesses. kvm_amd/kvm_intel are
 * built from the same headers and .config; vermagic ties the module to it.
 */
#include "kvm/svm/svm.h"
#include "kvm/vmx/vmx.h"
#include "kvm/trace.h"

#include "kvm_glue.h"

static_assert(KVM_PFI_GLUE_MCAST_CAP_SYS_ADMIN == GENL_MCAST_CAP_SYS_ADMIN);

/* The probe types are the tracepoints' TP_PROTO (see kvm_glue.h). */
static_assert(__same_type(&register_trace_kvm_entry, int (*)(kvm_pfi_entry_probe_fn, void *)));
static_assert(__same_type(&unregister_trace_kvm_entry, int (*)(kvm_pfi_entry_probe_fn, void *)));
static_assert(__same_type(&register_trace_kvm_exit, int (*)(kvm_pfi_exit_probe_fn, void *)));
static_assert(__same_type(&unregister_trace_kvm_exit, int (*)(kvm_pfi_exit_probe_fn, void *)));

/* The encodings pfi_core uses (kvm_glue.h), as the kernel defines them. */
static_assert(KVM_PFI_GLUE_SVM_PF_EVENT ==
	      (SVM_EVTINJ_VALID | SVM_EVTINJ_VALID_ERR | SVM_EVTINJ_TYPE_EXEPT | PF_VECTOR));
static_assert(KVM_PFI_GLUE_VMX_PF_EVENT ==
	      (INTR_INFO_VALID_MASK | INTR_INFO_DELIVER_CODE_MASK | INTR_TYPE_HARD_EXCEPTION |
	       PF_VECTOR));
static_assert(KVM_PFI_GLUE_EVENT_VALID == SVM_EXITINTINFO_VALID &&
	      KVM_PFI_GLUE_EVENT_VALID == VECTORING_INFO_VALID_MASK);
static_assert(KVM_PFI_GLUE_EVENT_TYPE_MASK == SVM_EXITINTINFO_TYPE_MASK &&
	      KVM_PFI_GLUE_EVENT_TYPE_MASK == VECTORING_INFO_TYPE_MASK);
static_assert(KVM_PFI_GLUE_EVENT_TYPE_HW_EXCEPTION == SVM_EXITINTINFO_TYPE_EXEPT &&
	      KVM_PFI_GLUE_EVENT_TYPE_HW_EXCEPTION == INTR_TYPE_HARD_EXCEPTION);
static_assert(KVM_PFI_GLUE_SVM_INTERRUPT_SHADOW == SVM_INTERRUPT_SHADOW_MASK);
static_assert(KVM_PFI_GLUE_VMX_INTERRUPT_SHADOW ==
	      (GUEST_INTR_STATE_STI | GUEST_INTR_STATE_MOV_SS));

/* The fields copied into struct kvm_pfi_cpu_state fit without truncation. */
#define ASSERT_FITS(type, field, dst)                                                    \
	static_assert(sizeof_field(type, field) <= sizeof_field(struct kvm_pfi_cpu_state, dst))
ASSERT_FITS(struct vmcb_save_area, cr0, cr0);
ASSERT_FITS(struct vmcb_save_area, cr3, cr3);
ASSERT_FITS(struct vmcb_save_area, cr4, cr4);
ASSERT_FITS(struct vmcb_save_area, efer, efer);
ASSERT_FITS(struct vmcb_save_area, rflags, rflags);
ASSERT_FITS(struct vmcb_save_area, cpl, cpl_field);
ASSERT_FITS(struct vmcb_control_area, event_inj, event_field);
ASSERT_FITS(struct vmcb_control_area, exit_int_info, exit_int_info);
ASSERT_FITS(struct vmcb_control_area, int_state, shadow_field);
ASSERT_FITS(struct kvm_vcpu_arch, efer, efer);
/* The #PF's CR2 is written where svm/vmx_vcpu_run() load it from. */
static_assert(__same_type(((struct kvm_vcpu_arch *)0)->cr2, unsigned long));
static_assert(sizeof_field(struct vmcb_control_area, event_inj_err) == sizeof(u32));

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

int kvm_pfi_register_entry_probe(kvm_pfi_entry_probe_fn probe, void *data)
{
	return register_trace_kvm_entry(probe, data);
}

int kvm_pfi_unregister_entry_probe(kvm_pfi_entry_probe_fn probe, void *data)
{
	return unregister_trace_kvm_entry(probe, data);
}

int kvm_pfi_register_exit_probe(kvm_pfi_exit_probe_fn probe, void *data)
{
	return register_trace_kvm_exit(probe, data);
}

int kvm_pfi_unregister_exit_probe(kvm_pfi_exit_probe_fn probe, void *data)
{
	return unregister_trace_kvm_exit(probe, data);
}

void kvm_pfi_probes_synchronize(void)
{
	tracepoint_synchronize_unregister();
}

/*
 * The VMCB the next VMRUN uses: struct vcpu_svm's "vmcb", which KVM keeps
 * equal to current_vmcb->ptr (vmcb01, or vmcb02 while a nested guest runs).
 * Guests with protected state (SEV-ES, SEV-SNP) keep theirs in the VMSA,
 * which the host cannot read: none.
 */
static struct vmcb *svm_current_vmcb(const struct kvm_vcpu *vcpu)
{
	if (vcpu->arch.guest_state_protected)
		return NULL;
	return to_svm((struct kvm_vcpu *)vcpu)->vmcb;
}

static void read_kvm_events(const struct kvm_vcpu *vcpu, struct kvm_pfi_cpu_state *st)
{
	const struct kvm_vcpu_arch *a = &vcpu->arch;

	st->exception_pending = a->exception.pending || a->exception.injected ||
				a->exception_vmexit.pending;
	st->interrupt_pending = a->interrupt.injected;
	st->nmi_pending = a->nmi_injected || a->nmi_pending || atomic_read(&a->nmi_queued);
	st->guest_mode = !!(a->hflags & HF_GUEST_MASK);
	st->smm = !!(a->hflags & HF_SMM_MASK);
	st->guest_debug = !!(vcpu->guest_debug & KVM_GUESTDBG_ENABLE);
	/*
	 * KVM keeps the guest's PKRU here while the host's is loaded, and
	 * loads it (kvm_load_guest_xsave_state()) before the entry probe runs:
	 * at an entry or exit this is the value the guest task runs with.
	 */
	st->pkru = a->pkru;
}

void kvm_pfi_svm_read_state(const struct kvm_vcpu *vcpu, struct kvm_pfi_cpu_state *st)
{
	const struct vmcb *vmcb = svm_current_vmcb(vcpu);

	memset(st, 0, sizeof(*st));
	if (!vmcb)
		return;
	st->cr0 = vmcb->save.cr0;
	/*
	 * With nested paging the VMCB holds the guest's CR3; with shadow
	 * paging it holds KVM's shadow root, and KVM's copy is the guest's
	 * (CR3 accesses exit). svm_vcpu_run() makes the same choice.
	 */
	st->cr3 = (vmcb->control.misc_ctl & SVM_MISC_ENABLE_NP) ? vmcb->save.cr3 :
									    vcpu->arch.cr3;
	st->cr4 = vmcb->save.cr4;
	st->efer = vmcb->save.efer;
	st->rflags = vmcb->save.rflags;
	st->cpl_field = vmcb->save.cpl;
	st->event_field = vmcb->control.event_inj;
	st->exit_int_info = vmcb->control.exit_int_info;
	st->shadow_field = vmcb->control.int_state;
	read_kvm_events(vcpu, st);
	st->valid = 1;
}

void kvm_pfi_svm_inject(struct kvm_vcpu *vcpu, unsigned long long cr2, unsigned int event,
			unsigned int error_code)
{
	struct vmcb *vmcb = svm_current_vmcb(vcpu);

	if (WARN_ON_ONCE(!vmcb || (vmcb->control.event_inj & SVM_EVTINJ_VALID)))
		return;
	/* svm_vcpu_run() copies arch.cr2 into the VMCB after kvm_entry. */
	vcpu->arch.cr2 = cr2;
	vmcb->control.event_inj_err = error_code;
	vmcb->control.event_inj = event;
}

/*
 * VMREAD/VMWRITE of the current VMCS (SDM vol. 3C, 31.3). KVM's accessors
 * are private to kvm-intel. Failure (CF or ZF set: no current VMCS, or a bad
 * field) reads as @fail / reports false.
 */
static bool vmcs_read(unsigned long field, unsigned long *value)
{
	bool fail;

	asm volatile("vmread %[field], %[value]"
		     : [value] "=rm"(*value), "=@ccbe"(fail)
		     : [field] "r"(field)
		     : "cc");
	return !fail;
}

static bool vmcs_write(unsigned long field, unsigned long value)
{
	bool fail;

	asm volatile("vmwrite %[value], %[field]"
		     : "=@ccbe"(fail)
		     : [field] "r"(field), [value] "rm"(value)
		     : "cc");
	return !fail;
}

/*
 * Whether the VMCS current on this CPU is @vcpu's (struct vcpu_vmx's
 * loaded_vmcs: vmcs01, or vmcs02 while a nested guest runs), which KVM
 * loads before kvm_entry and keeps loaded until after kvm_exit. Not so for
 * a TDX vCPU (not a vcpu_vmx, and its state is the TDX module's), or with
 * Hyper-V's enlightened VMCS (KVM does not use VMREAD/VMWRITE then).
 */
static bool vmx_vmcs_is_vcpus(const struct kvm_vcpu *vcpu)
{
	u64 current_pa;

	if (vcpu->arch.guest_state_protected || vcpu->kvm->arch.vm_type == KVM_X86_TDX_VM)
		return false;
	asm volatile("vmptrst %0" : "=m"(current_pa) : : "cc");
	return current_pa == __pa(to_vmx((struct kvm_vcpu *)vcpu)->loaded_vmcs->vmcs);
}

void kvm_pfi_vmx_read_state(const struct kvm_vcpu *vcpu, struct kvm_pfi_cpu_state *st)
{
	unsigned long cr0, cr3, cr4, rflags, ss_ar, intr_state, entry_info, idt_info, activity,
		exec_ctl, exit_reason;

	memset(st, 0, sizeof(*st));
	if (!vmx_vmcs_is_vcpus(vcpu))
		return;
	if (!vmcs_read(GUEST_CR0, &cr0) || !vmcs_read(GUEST_CR3, &cr3) ||
	    !vmcs_read(GUEST_CR4, &cr4) || !vmcs_read(GUEST_RFLAGS, &rflags) ||
	    !vmcs_read(GUEST_SS_AR_BYTES, &ss_ar) ||
	    !vmcs_read(GUEST_INTERRUPTIBILITY_INFO, &intr_state) ||
	    !vmcs_read(GUEST_ACTIVITY_STATE, &activity) ||
	    !vmcs_read(VM_ENTRY_INTR_INFO_FIELD, &entry_info) ||
	    !vmcs_read(IDT_VECTORING_INFO_FIELD, &idt_info) ||
	    !vmcs_read(CPU_BASED_VM_EXEC_CONTROL, &exec_ctl) ||
	    !vmcs_read(VM_EXIT_REASON, &exit_reason))
		return;
	st->cr0 = cr0;
	/*
	 * While CR3 loads exit (shadow paging), GUEST_CR3 is KVM's shadow
	 * root and KVM's copy is the guest's: vmx_cache_reg() decides the
	 * same way.
	 */
	st->cr3 = (exec_ctl & CPU_BASED_CR3_LOAD_EXITING) ? vcpu->arch.cr3 : cr3;
	st->cr4 = cr4;
	/* The VMCS holds EFER only with the "load IA32_EFER" controls. */
	st->efer = vcpu->arch.efer;
	st->rflags = rflags;
	st->cpl_field = ss_ar;
	st->event_field = entry_info;
	st->shadow_field = intr_state;
	st->activity_state = activity;
	/*
	 * A failed VM entry delivered nothing and leaves the field as it was:
	 * vmx_vcpu_enter_exit() reads it only after a successful entry too.
	 */
	st->exit_int_info = (exit_reason & VMX_EXIT_REASONS_FAILED_VMENTRY) ? 0 : idt_info;
	read_kvm_events(vcpu, st);
	st->valid = 1;
}

void kvm_pfi_vmx_inject(struct kvm_vcpu *vcpu, unsigned long long cr2, unsigned int event,
			unsigned int error_code)
{
	unsigned long entry_info, activity;

	if (WARN_ON_ONCE(!vmx_vmcs_is_vcpus(vcpu) ||
			 !vmcs_read(VM_ENTRY_INTR_INFO_FIELD, &entry_info) ||
			 (entry_info & INTR_INFO_VALID_MASK) ||
			 !vmcs_read(GUEST_ACTIVITY_STATE, &activity)))
		return;
	/* vmx_vcpu_enter_exit() loads arch.cr2 into CR2 after kvm_entry. */
	vcpu->arch.cr2 = cr2;
	/* Bits 31:16 of the error code make VM entry fail (vmx_inject_exception()). */
	if (!vmcs_write(VM_ENTRY_EXCEPTION_ERROR_CODE, (u16)error_code) ||
	    !vmcs_write(VM_ENTRY_INTR_INFO_FIELD, event))
		return;
	/*
	 * A guest that halts without exiting (KVM_X86_DISABLE_EXITS_HLT) is
	 * entered in the HLT activity state, in which VM entry refuses a #PF:
	 * the event wakes it, as vmx_clear_hlt() does for KVM's own events
	 * (RIP is already past the HLT).
	 */
	if (activity == GUEST_ACTIVITY_HLT)
		vmcs_write(GUEST_ACTIVITY_STATE, GUEST_ACTIVITY_ACTIVE);
}

unsigned int kvm_pfi_vcpu_maxphyaddr(const struct kvm_vcpu *vcpu)
{
	return vcpu->arch.maxphyaddr;
}

unsigned char kvm_pfi_vcpu_has_gbpages(const struct kvm_vcpu *vcpu)
{
	/* cpuid.h's inline reader of the guest CPUID KVM computed. */
	return guest_cpu_cap_has((struct kvm_vcpu *)vcpu, X86_FEATURE_GBPAGES);
}

/* The VMM's address of guest physical @gpa; caller holds kvm->srcu. */
static int gpa_to_hva(struct kvm *kvm, unsigned long long gpa, unsigned long *hva)
{
	const struct kvm_memory_slot *slot;

	slot = __gfn_to_memslot(kvm_memslots(kvm), gpa_to_gfn(gpa));
	if (!slot || (slot->flags & KVM_MEMSLOT_INVALID))
		return -ENOENT;
	/* guest_memfd (private) memory has no host mapping to read. */
	if (kvm_slot_has_gmem(slot))
		return -EINVAL;
	*hva = __gfn_to_hva_memslot(slot, gpa_to_gfn(gpa)) + offset_in_page(gpa);
	return 0;
}

/*
 * For the write from a vCPU thread: the VMM's address of @len bytes at
 * @gpa, within one page. On success kvm->srcu is held (*idx): the caller
 * copies, then unlocks.
 */
static int vmm_thread_hva(struct kvm *kvm, unsigned long long gpa, unsigned int len,
			  unsigned long *hva, int *idx)
{
	int r;

	if (len > PAGE_SIZE - offset_in_page(gpa) || current->mm != kvm->mm)
		return -EINVAL;
	*idx = srcu_read_lock(&kvm->srcu);
	r = gpa_to_hva(kvm, gpa, hva);
	if (r)
		srcu_read_unlock(&kvm->srcu, *idx);
	return r;
}

int kvm_pfi_mm_borrow(struct kvm *kvm)
{
	if (!(current->flags & PF_KTHREAD) || current->mm)
		return -EINVAL;
	if (!mmget_not_zero(kvm->mm))
		return -ESRCH;
	kthread_use_mm(kvm->mm);
	return 0;
}

void kvm_pfi_mm_unborrow(struct kvm *kvm)
{
	kthread_unuse_mm(kvm->mm);
	mmput(kvm->mm);
}

/*
 * The probes' copy: pagefault_disable()d, so a host page that is not
 * resident fails (-EAGAIN). The probes run between KVM's loading of the
 * guest's PKRU and its reloading of the host's (kvm_load_guest_pkru() /
 * kvm_load_host_pkru() around the run loop in vcpu_enter_guest()), and
 * protection keys apply to the kernel's accesses to user addresses too: a
 * guest PKRU that denies key 0 would fail every copy from the VMM's mapping.
 * So the copy runs with PKRU 0 (every key allowed: the read is the
 * kernel's, not the VMM's), and the guest's value goes back before KVM
 * saves it. Interrupts are off in a probe: nothing else runs meanwhile.
 */
static int probe_copy(void *buf, unsigned long hva, unsigned int len)
{
	u32 pkru = read_pkru();
	int r;

	lockdep_assert_irqs_disabled();
	if (pkru)
		write_pkru(0);
	r = copy_from_user_nofault(buf, (const void __user *)hva, len) ? -EAGAIN : 0;
	if (pkru)
		write_pkru(pkru);
	return r;
}

int kvm_pfi_read_guest(struct kvm *kvm, unsigned long long gpa, void *buf, unsigned int len,
		       enum kvm_pfi_glue_context ctx)
{
	/* Unless the work borrowed the VMM's mm for its whole run already. */
	bool borrow = ctx == KVM_PFI_GLUE_CTX_KWORKER && current->mm != kvm->mm;
	unsigned long hva;
	int idx, r;

	if (len > PAGE_SIZE - offset_in_page(gpa))
		return -EINVAL;
	if (ctx == KVM_PFI_GLUE_CTX_VCPU_THREAD)
		might_sleep();
	if (borrow) {
		if (!(current->flags & PF_KTHREAD) || current->mm)
			return -EINVAL;
		if (!mmget_not_zero(kvm->mm))
			return -ESRCH;
		kthread_use_mm(kvm->mm);
	} else if (current->mm != kvm->mm) {
		return -EINVAL;
	}
	/* SRCU readers may sleep: the memslot stays while we copy from it. */
	idx = srcu_read_lock(&kvm->srcu);
	r = gpa_to_hva(kvm, gpa, &hva);
	if (!r && ctx == KVM_PFI_GLUE_CTX_PROBE)
		r = probe_copy(buf, hva, len);
	else if (!r)
		r = copy_from_user(buf, (const void __user *)hva, len) ? -EFAULT : 0;
	srcu_read_unlock(&kvm->srcu, idx);
	if (borrow) {
		kthread_unuse_mm(kvm->mm);
		mmput(kvm->mm);
	}
	return r;
}

unsigned long long kvm_pfi_now_ns(void)
{
	return ktime_get_ns();
}

struct kvm_pfi_tracker {
	struct kvm_page_track_notifier_node node;
	kvm_pfi_track_write_fn write;
	kvm_pfi_track_region_gone_fn region_gone;
	void *owner;
};

static void tracker_write(gpa_t gpa, const u8 *new, int bytes,
			  struct kvm_page_track_notifier_node *node)
{
	struct kvm_pfi_tracker *t = container_of(node, struct kvm_pfi_tracker, node);

	t->write(t->owner, gpa, new, bytes);
}

static void tracker_remove_region(gfn_t gfn, unsigned long nr_pages,
				  struct kvm_page_track_notifier_node *node)
{
	struct kvm_pfi_tracker *t = container_of(node, struct kvm_pfi_tracker, node);

	t->region_gone(t->owner, gfn, nr_pages);
}

struct kvm_pfi_tracker *kvm_pfi_tracker_create(struct kvm *kvm, kvm_pfi_track_write_fn write,
					       kvm_pfi_track_region_gone_fn region_gone,
					       void *owner, int *err)
{
	struct kvm_pfi_tracker *t = kzalloc(sizeof(*t), GFP_KERNEL);
	bool borrow = current->mm != kvm->mm;

	if (!t) {
		*err = -ENOMEM;
		return NULL;
	}
	t->node.track_write = tracker_write;
	t->node.track_remove_region = tracker_remove_region;
	t->write = write;
	t->region_gone = region_gone;
	t->owner = owner;
	if (borrow) {
		if (!(current->flags & PF_KTHREAD) || current->mm) {
			*err = -EINVAL;
			goto fail;
		}
		if (!mmget_not_zero(kvm->mm)) {
			*err = -ESRCH;
			goto fail;
		}
		kthread_use_mm(kvm->mm);
	}
	{
		/* Enabling external tracking walks the memslots, which needs
		 * kvm->srcu (lockdep says so); KVMGT calls this in a context
		 * that has it. */
		int idx = srcu_read_lock(&kvm->srcu);

		*err = kvm_page_track_register_notifier(kvm, &t->node);
		srcu_read_unlock(&kvm->srcu, idx);
	}
	if (borrow) {
		kthread_unuse_mm(kvm->mm);
		mmput(kvm->mm);
	}
	if (*err)
		goto fail;
	return t;
fail:
	kfree(t);
	return NULL;
}

void kvm_pfi_tracker_destroy(struct kvm *kvm, struct kvm_pfi_tracker *t)
{
	kvm_page_track_unregister_notifier(kvm, &t->node);
	kfree(t);
}

int kvm_pfi_write_guest_vcpu_thread(struct kvm *kvm, unsigned long long gpa, const void *buf,
				    unsigned int len)
{
	unsigned long hva;
	int idx, r;

	might_sleep();
	r = vmm_thread_hva(kvm, gpa, len, &hva, &idx);
	if (r)
		return r;
	/* KVM's mark_page_dirty() is internal to KVM; the guest write being
	 * undone was emulated by KVM, which marked this page dirty already. */
	r = copy_to_user((void __user *)hva, buf, len) ? -EFAULT : 0;
	srcu_read_unlock(&kvm->srcu, idx);
	return r;
}

int kvm_pfi_track_gfn(struct kvm *kvm, unsigned long long gfn, int add)
{
	lockdep_assert_held(&kvm->slots_lock);
	return add ? kvm_write_track_add_gfn(kvm, gfn) : kvm_write_track_remove_gfn(kvm, gfn);
}

void kvm_pfi_memslots_lock(struct kvm *kvm)
{
	mutex_lock(&kvm->slots_lock);
}

void kvm_pfi_memslots_unlock(struct kvm *kvm)
{
	mutex_unlock(&kvm->slots_lock);
}

int kvm_pfi_events_fd(const void *fops, void *priv)
{
	return anon_inode_getfd("[kvm_pfi-events]", fops, priv, O_RDONLY | O_CLOEXEC);
}

unsigned long long kvm_pfi_realtime_ns(void)
{
	return ktime_get_real_ns();
}

void kvm_pfi_cond_resched(void)
{
	cond_resched();
}
