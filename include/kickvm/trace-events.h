/*
 * The list of trace events: TRACE_EVENT(name, (prototype), format, args...).
 * Included only by trace.h with different TRACE_EVENT definitions.
 * Keep the ioeventfd_* formats as in QEMU's trace-events:
 *   name+offset[size]:data  for init/exit,  name+offset[size] -> data  for handler.
 */
/* ioeventfd lifecycle (memory/ioeventfd.c) */
TRACE_EVENT(ioeventfd_init, (const char *name, uint64_t addr, unsigned size, uint64_t data),
	    "%s+0x%" PRIx64 "[%u]:0x%" PRIx64 "", name, addr, size, data)
TRACE_EVENT(ioeventfd_handler, (const char *name, uint64_t addr, unsigned size, uint64_t data),
	    "%s+0x%" PRIx64 "[%u] -> 0x%" PRIx64 "", name, addr, size, data)
TRACE_EVENT(ioeventfd_exit, (const char *name, uint64_t addr, unsigned size, uint64_t data),
	    "%s+0x%" PRIx64 "[%u]:0x%" PRIx64 "", name, addr, size, data)
/* a trapped write matched an ioeventfd in userspace */
TRACE_EVENT(ioeventfd_fallback, (const char *as, uint64_t addr, unsigned size, uint64_t data),
	    "%s 0x%" PRIx64 "[%u]:0x%" PRIx64 "", as, addr, size, data)
/* KVM accepted / refused a registration */
TRACE_EVENT(ioeventfd_kvm_assign, (const char *as, uint64_t addr, unsigned size, uint64_t data, int err),
	    "%s 0x%" PRIx64 "[%u]:0x%" PRIx64 " err=%d", as, addr, size, data, err)
TRACE_EVENT(ioeventfd_kvm_deassign, (const char *as, uint64_t addr, unsigned size, uint64_t data, int err),
	    "%s 0x%" PRIx64 "[%u]:0x%" PRIx64 " err=%d", as, addr, size, data, err)
/* memory topology */
TRACE_EVENT(memory_commit, (const char *as, unsigned ranges, unsigned ioeventfds),
	    "%s ranges=%u ioeventfds=%u", as, ranges, ioeventfds)
TRACE_EVENT(memslot_set, (unsigned slot, uint64_t gpa, uint64_t size, uint64_t hva),
	    "slot=%u gpa=0x%" PRIx64 " size=0x%" PRIx64 " hva=0x%" PRIx64 "", slot, gpa, size, hva)
/* vCPU exits dispatched to userspace */
TRACE_EVENT(vcpu_exit_mmio, (int cpu, uint64_t addr, unsigned len, int is_write, uint64_t data),
	    "cpu=%d addr=0x%" PRIx64 " len=%u %s data=0x%" PRIx64 "", cpu, addr, len, is_write ? "write" : "read", data)
TRACE_EVENT(vcpu_exit_pio, (int cpu, unsigned port, unsigned len, int is_write, uint64_t data),
	    "cpu=%d port=0x%x len=%u %s data=0x%" PRIx64 "", cpu, port, len, is_write ? "write" : "read", data)
TRACE_EVENT(unassigned_access, (const char *as, uint64_t addr, unsigned len, int is_write, uint64_t data),
	    "%s addr=0x%" PRIx64 " len=%u %s data=0x%" PRIx64 "", as, addr, len, is_write ? "write" : "read", data)
