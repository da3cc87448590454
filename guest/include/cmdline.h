/*
 * The guest command line as key=value words: "mode=test irq=1 ecam=0xe0000000".
 * Words are separated by blanks; a word without '=' is ignored, so a host can
 * add notes the guest does not know.  Call at CPL3 (the loops are plain C,
 * and CPL0 code is emulated on our KVM).
 */
#ifndef GUEST_CMDLINE_H
#define GUEST_CMDLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Call @fn for each key=value word of @cmdline, in order.  Key and value
 * are not NUL-terminated: they are (pointer, length) pairs into @cmdline. */
void cmdline_for_each(const char *cmdline,
		      void (*fn)(void *ctx, const char *key, size_t klen,
				 const char *val, size_t vlen),
		      void *ctx);
/* @klen bytes at @key spell exactly @name. */
bool cmdline_key_is(const char *key, size_t klen, const char *name);
/* A decimal or 0x-hex number of exactly @n characters; false if it is not. */
bool cmdline_u64(const char *s, size_t n, uint64_t *out);

#endif
