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

/*
 * Guest CPU state at a VM entry or exit: raw vendor fields as the hardware
 * will load them (SVM: the VMCB; VMX: the current VMCS, readable only in the
 * probes, where KVM has it loaded on this CPU) plus KVM's event bookkeeping.
 * rust/pfi_core/vendor.rs decodes the vendor fields.
 */
struct kvm_pfi_cpu_state {
	unsigned long long cr0, cr3, cr4, efer, rflags;
	unsigned int cpl_field;		/* SVM: VMCB CPL; VMX: GUEST_SS_AR_BYTES */
	unsigned int event_field;	/* SVM: EVENTINJ; VMX: VM_ENTRY_INTR_INFO_FIELD */
	unsigned int shadow_field;	/* SVM: INTERRUPT_SHADOW; VMX: GUEST_INTERRUPTIBILITY_INFO */
	unsigned int exit_int_info;	/* SVM: EXITINTINFO; VMX: IDT_VECTORING_INFO_FIELD */
	unsigned int activity_state;	/* SVM: 0 (active); VMX: GUEST_ACTIVITY_STATE */
	unsigned int pkru;		/* KVM: the guest's PKRU (vcpu->arch.pkru), meaningful with CR4.PKE */
	unsigned char exception_pending; /* KVM: exception pending or injected */
	unsigned char interrupt_pending; /* KVM: interrupt injected */
	unsigned char nmi_pending;	/* KVM: NMI queued, pending or injected */
	unsigned char guest_mode;	/* running a nested guest */
	unsigned char smm;		/* in system-management mode */
	unsigned char guest_debug;	/* the VMM set KVM_GUESTDBG_ENABLE (vcpu->guest_debug) */
	unsigned char valid;		/* the vendor state could be read */
};

/*
 * Read the state, or inject a #PF on this entry: @event is the encoded
 * event (pfi_core::vendor::page_fault_event) for EVENTINJ or the VM-entry
 * interruption-information field, @error_code its error code. Call from the
 * kvm_entry / kvm_exit probes only.
 */
void kvm_pfi_svm_read_state(const struct kvm_vcpu *vcpu, struct kvm_pfi_cpu_state *st);
void kvm_pfi_svm_inject(struct kvm_vcpu *vcpu, unsigned long long cr2, unsigned int event,
			unsigned int error_code);
/* Intel: run by the VMX stage of make test (Bochs). */
void kvm_pfi_vmx_read_state(const struct kvm_vcpu *vcpu, struct kvm_pfi_cpu_state *st);
void kvm_pfi_vmx_inject(struct kvm_vcpu *vcpu, unsigned long long cr2, unsigned int event,
			unsigned int error_code);

/* Guest CPU features the page walk needs (KVM's view of the guest's CPUID). */
unsigned int kvm_pfi_vcpu_maxphyaddr(const struct kvm_vcpu *vcpu);
unsigned char kvm_pfi_vcpu_has_gbpages(const struct kvm_vcpu *vcpu);

/* Where a guest memory read runs, which decides how it may copy. */
enum kvm_pfi_glue_context {
	/* A probe: the VMM's vCPU thread, interrupts off; never sleeps or faults. */
	KVM_PFI_GLUE_CTX_PROBE = 0,
	/* A kernel thread (a work item): borrows the VMM's mm; may sleep. */
	KVM_PFI_GLUE_CTX_KWORKER = 1,
	/* A VMM thread that may sleep (the page-track notifier): may fault in. */
	KVM_PFI_GLUE_CTX_VCPU_THREAD = 2,
};
/*
 * The one reader of guest memory: copies @len bytes of guest physical memory
 * at @gpa (not crossing a page) into @buf through the VMM's mapping, as
 * @ctx allows. Returns 0, -ENOENT (no memslot: outside guest memory),
 * -EAGAIN (probe: host page not resident now, try on a later exit), -EFAULT,
 * -ESRCH (kworker: the VMM's address space is gone) or -EINVAL (crosses a
 * page, private memory, wrong thread for @ctx).
 */
int kvm_pfi_read_guest(struct kvm *kvm, unsigned long long gpa, void *buf, unsigned int len,
		       enum kvm_pfi_glue_context ctx);
/*
 * A kernel thread's run of KVM_PFI_GLUE_CTX_KWORKER reads (and tracker
 * creation) borrows the VMM's mm once (kthread_use_mm) instead of per read:
 * 0, -ESRCH (the VMM's address space is gone), -EINVAL (not a kernel
 * thread, or one using an mm). Unborrow from the same thread.
 */
int kvm_pfi_mm_borrow(struct kvm *kvm);
void kvm_pfi_mm_unborrow(struct kvm *kvm);
/*
 * Write tracking of guest pages through KVM's page-track notifier, to see the
 * guest OS rewrite a page-table entry. @write is called, in the vCPU thread,
 * after KVM emulated a guest write to a tracked page; @region_gone when a
 * memslot goes away (its tracking goes with it). Creating registers the
 * notifier, which KVM only allows from the VMM's mm: from a kernel thread,
 * the glue borrows it. Creating and destroying sleep. The notifier holds a
 * reference on the VM while registered.
 */
struct kvm_pfi_tracker;
typedef void (*kvm_pfi_track_write_fn)(void *owner, unsigned long long gpa,
				       const unsigned char *new_bytes, unsigned int bytes);
typedef void (*kvm_pfi_track_region_gone_fn)(void *owner, unsigned long long gfn,
					     unsigned long nr_pages);
struct kvm_pfi_tracker *kvm_pfi_tracker_create(struct kvm *kvm, kvm_pfi_track_write_fn write,
					       kvm_pfi_track_region_gone_fn region_gone,
					       void *owner, int *err);
void kvm_pfi_tracker_destroy(struct kvm *kvm, struct kvm_pfi_tracker *t);
/*
 * Writes @len bytes at @gpa from the thread of one of the VM's vCPUs (the
 * page-track notifier runs there, holding kvm->srcu). May sleep. 0 or -errno.
 */
int kvm_pfi_write_guest_vcpu_thread(struct kvm *kvm, unsigned long long gpa, const void *buf,
				    unsigned int len);
/*
 * Start (@add) or stop write-tracking guest frame @gfn; KVM counts per gfn.
 * The caller holds the VM's memslots lock (below), so that a memslot's
 * removal, which drops its tracking, never falls between this call and the
 * caller's record of it.
 */
int kvm_pfi_track_gfn(struct kvm *kvm, unsigned long long gfn, int add);
/* KVM's kvm->slots_lock: memslot updates hold it from start to end. */
void kvm_pfi_memslots_lock(struct kvm *kvm);
void kvm_pfi_memslots_unlock(struct kvm *kvm);

/*
 * A new descriptor for an event reader: an anon inode "[kvm_pfi-events]"
 * with @fops (a struct file_operations) and @priv, read-only, close-on-exec.
 * anon_inodes.h is not in the kernel's Rust bindings.
 */
int kvm_pfi_events_fd(const void *fops, void *priv);
/* Wall-clock time for event records. */
unsigned long long kvm_pfi_realtime_ns(void);

/* Monotonic clock for timeouts, safe with interrupts off. */
unsigned long long kvm_pfi_now_ns(void);
/* cond_resched(), a macro Rust cannot call: between pages of a long scan. */
void kvm_pfi_cond_resched(void);

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

/*
 * Probes on KVM's exported kvm_entry / kvm_exit tracepoints, with the
 * tracepoints' TP_PROTO (arch/x86/kvm/trace.h) as their types: kvm_glue.c
 * registers them through the register_trace_*() functions DECLARE_TRACE
 * generates from that prototype and asserts at build time that these types
 * are the same, and rustc checks the Rust probes against bindgen's copy of
 * them. A kernel whose tracepoint prototype differs fails to build.
 */
typedef void (*kvm_pfi_entry_probe_fn)(void *data, struct kvm_vcpu *vcpu,
				       _Bool force_immediate_exit);
typedef void (*kvm_pfi_exit_probe_fn)(void *data, struct kvm_vcpu *vcpu, unsigned int isa);
int kvm_pfi_register_entry_probe(kvm_pfi_entry_probe_fn probe, void *data);
int kvm_pfi_unregister_entry_probe(kvm_pfi_entry_probe_fn probe, void *data);
int kvm_pfi_register_exit_probe(kvm_pfi_exit_probe_fn probe, void *data);
int kvm_pfi_unregister_exit_probe(kvm_pfi_exit_probe_fn probe, void *data);
/* Wait until no probe unregistered before this call can still be running. */
void kvm_pfi_probes_synchronize(void);

/*
 * The vendor encodings rust/pfi_core/vendor.rs writes and decodes, as the
 * kernel's headers define them (asm/svm.h, asm/vmx.h); kvm_glue.c asserts
 * each against the kernel's definition, rust/bindings.rs asserts pfi_core's
 * constants against these.
 */
/* The #PF with error code: EVENTINJ and VM-entry interruption info. */
#define KVM_PFI_GLUE_SVM_PF_EVENT 0x80000b0e
#define KVM_PFI_GLUE_VMX_PF_EVENT 0x80000b0e
/* EXITINTINFO / IDT-vectoring info: valid bit, type field, #PF type. */
#define KVM_PFI_GLUE_EVENT_VALID 0x80000000
#define KVM_PFI_GLUE_EVENT_TYPE_MASK 0x700
#define KVM_PFI_GLUE_EVENT_TYPE_HW_EXCEPTION 0x300
/* SVM INTERRUPT_SHADOW; VMX STI | MOV SS blocking. */
#define KVM_PFI_GLUE_SVM_INTERRUPT_SHADOW 1
#define KVM_PFI_GLUE_VMX_INTERRUPT_SHADOW 3

#endif /* KVM_PFI_GLUE_H */
