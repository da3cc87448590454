/*
 * The guest command line as key=value words (guest/include/cmdline.h).
 */
#include "guest.h"
#include "cmdline.h"

static bool blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n';
}

void cmdline_for_each(const char *cmdline,
		      void (*fn)(void *ctx, const char *key, size_t klen,
				 const char *val, size_t vlen),
		      void *ctx)
{
	const char *p = cmdline;

	while (*p) {
		const char *w, *eq = NULL;

		while (blank(*p))
			p++;
		for (w = p; *p && !blank(*p); p++)
			if (*p == '=' && !eq)
				eq = p;
		if (eq)
			fn(ctx, w, (size_t)(eq - w), eq + 1, (size_t)(p - eq - 1));
	}
}

bool cmdline_key_is(const char *key, size_t klen, const char *name)
{
	return strlen(name) == klen && !strncmp(key, name, klen);
}

bool cmdline_u64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	unsigned base = 10;

	if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
		n -= 2;
	}
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') :
			     c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10) :
			     c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 99;

		if (d >= base)
			return false;
		v = v * base + d;
	}
	*out = v;
	return true;
}
