/*
 * Console output and a small printf.  The backend depends on where we run:
 * CPL0 writes the 8250 data port (one exit per character); CPL3 cannot do
 * port I/O, so it writes SYSDEV_PUTC on kickvm or traps to CPL0 elsewhere.
 */
#include "guest.h"
#include "runtime.h"

/* Owner CPU + 1, or 0.  Re-entry by the owner (a fault while printing) is
 * let through rather than deadlocking. */
static int console_owner;

static void uart_write(const char *s, unsigned long len)
{
	for (unsigned long i = 0; i < len; i++)
		outb(KICKVM_UART_PORT, (uint8_t)s[i]);
}

struct chunk {
	const char *s;
	unsigned long len;
};

static long uart_write_kcall(void *arg)
{
	struct chunk *c = arg;

	uart_write(c->s, c->len);
	return 0;
}

static void console_raw(const char *s, unsigned long len)
{
	if (guest_cpl() == 0) {
		uart_write(s, len);
	} else if (guest_has_sysdev) {
		for (unsigned long i = 0; i < len; i++)
			mmio_write8(KICKVM_SYSDEV_BASE + SYSDEV_PUTC, (uint8_t)s[i]);
	} else {
		struct chunk c = { s, len };

		run_kernel(uart_write_kcall, &c);
	}
}

static int console_lock(void)
{
	int me = (int)guest_cpu() + 1, free = 0;

	if (__atomic_load_n(&console_owner, __ATOMIC_RELAXED) == me)
		return 0;
	while (!__atomic_compare_exchange_n(&console_owner, &free, me, false,
					    __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
		free = 0;
		cpu_relax();
	}
	return 1;
}

static void console_unlock(int taken)
{
	if (taken)
		__atomic_store_n(&console_owner, 0, __ATOMIC_RELEASE);
}

void console_write(const char *s, unsigned long len)
{
	int taken = console_lock();

	console_raw(s, len);
	console_unlock(taken);
}

/* ---- formatting ----------------------------------------------------------------- */

/* Output goes to a buffer; with @flush set a full buffer is written out
 * (printf), without it the rest is counted but dropped (snprintf). */
struct out {
	char *buf;
	size_t size, len, total;
	bool flush;
};

static void out_char(struct out *o, char c)
{
	o->total++;
	if (o->len + 1 >= o->size) {
		if (!o->flush)
			return;
		console_raw(o->buf, o->len);
		o->len = 0;
	}
	o->buf[o->len++] = c;
}

static void out_pad(struct out *o, char c, int n)
{
	while (n-- > 0)
		out_char(o, c);
}

static void out_str(struct out *o, const char *s, int width, int prec, bool left)
{
	int n = 0;

	if (!s)
		s = "(null)";
	while ((prec < 0 || n < prec) && s[n])
		n++;
	if (!left)
		out_pad(o, ' ', width - n);
	for (int i = 0; i < n; i++)
		out_char(o, s[i]);
	if (left)
		out_pad(o, ' ', width - n);
}

static void out_num(struct out *o, unsigned long long v, unsigned base, bool neg,
		    int width, bool zero, bool left, bool upper)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char tmp[24];
	int n = 0, len;

	do {
		tmp[n++] = digits[v % base];
		v /= base;
	} while (v);
	len = n + (neg ? 1 : 0);
	if (!left && !zero)
		out_pad(o, ' ', width - len);
	if (neg)
		out_char(o, '-');
	if (!left && zero)
		out_pad(o, '0', width - len);
	while (n)
		out_char(o, tmp[--n]);
	if (left)
		out_pad(o, ' ', width - len);
}

static void format(struct out *o, const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		bool zero = false, left = false, upper = false;
		int width = 0, prec = -1, lng = 0;
		unsigned long long v;

		if (*fmt != '%') {
			out_char(o, *fmt);
			continue;
		}
		for (fmt++; *fmt == '0' || *fmt == '-'; fmt++) {
			if (*fmt == '0')
				zero = true;
			else
				left = true;
		}
		if (*fmt == '*') {
			width = va_arg(ap, int);
			fmt++;
		}
		for (; *fmt >= '0' && *fmt <= '9'; fmt++)
			width = width * 10 + (*fmt - '0');
		if (*fmt == '.') {
			prec = 0;
			if (*++fmt == '*') {
				prec = va_arg(ap, int);
				fmt++;
			}
			for (; *fmt >= '0' && *fmt <= '9'; fmt++)
				prec = prec * 10 + (*fmt - '0');
		}
		for (; *fmt == 'l' || *fmt == 'z' || *fmt == 'h'; fmt++)
			lng += *fmt == 'h' ? 0 : (*fmt == 'z' ? 2 : 1);
		switch (*fmt) {
		case 'd':
		case 'i': {
			long long s = lng >= 2 ? va_arg(ap, long long) :
				      lng == 1 ? va_arg(ap, long) : va_arg(ap, int);

			v = s < 0 ? 0ull - (unsigned long long)s : (unsigned long long)s;
			out_num(o, v, 10, s < 0, width, zero, left, false);
			break;
		}
		case 'u':
		case 'x':
		case 'X':
		case 'o':
			v = lng >= 2 ? va_arg(ap, unsigned long long) :
			    lng == 1 ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
			upper = *fmt == 'X';
			out_num(o, v, *fmt == 'u' ? 10 : *fmt == 'o' ? 8 : 16, false,
				width, zero, left, upper);
			break;
		case 'p':
			out_str(o, "0x", 0, -1, false);
			out_num(o, (unsigned long long)(uintptr_t)va_arg(ap, void *), 16,
				false, width, zero, left, false);
			break;
		case 's':
			out_str(o, va_arg(ap, const char *), width, prec, left);
			break;
		case 'c':
			out_char(o, (char)va_arg(ap, int));
			break;
		case '%':
			out_char(o, '%');
			break;
		case '\0':
			return;
		default:
			out_char(o, '%');
			out_char(o, *fmt);
		}
	}
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	char dummy;
	struct out o = { .buf = size ? buf : &dummy, .size = size ? size : 1 };

	format(&o, fmt, ap);
	o.buf[o.len] = '\0';
	return (int)o.total;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

/* Formatting a line at CPL0 costs milliseconds of emulated instructions;
 * one run_user() round trip costs ~80 us.  So CPL0 formats at CPL3 into a
 * buffer and only writes the UART itself. */
#define CPL0_LINE_MAX 512

struct format_job {
	char *buf;
	const char *fmt;
	va_list *ap;
	size_t len;
};

static long format_at_cpl3(void *arg)
{
	struct format_job *j = arg;
	struct out o = { .buf = j->buf, .size = CPL0_LINE_MAX };

	format(&o, j->fmt, *j->ap);
	j->len = o.len;
	return (long)o.total;
}

int vprintf(const char *fmt, va_list ap)
{
	char buf[CPL0_LINE_MAX];
	int taken, total;

	/* Not while reporting a fault: that path must not depend on CPL3. */
	if (guest_cpl() == 0 && !this_percpu()->in_trap) {
		va_list copy;
		struct format_job j = { .buf = buf, .fmt = fmt, .ap = &copy };

		va_copy(copy, ap);
		total = (int)run_user(format_at_cpl3, &j);
		va_end(copy);
		taken = console_lock();
		console_raw(buf, j.len);
		if ((size_t)total > j.len)
			console_raw("[...]\n", 6);
		console_unlock(taken);
		return total;
	}

	struct out o = { .buf = buf, .size = sizeof(buf), .flush = true };

	taken = console_lock();
	format(&o, fmt, ap);
	console_raw(buf, o.len);
	console_unlock(taken);
	return (int)o.total;
}

int printf(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vprintf(fmt, ap);
	va_end(ap);
	return n;
}

int putchar(int c)
{
	char ch = (char)c;

	console_write(&ch, 1);
	return (unsigned char)c;
}

int puts(const char *s)
{
	int taken = console_lock();
	unsigned long n = strlen(s);

	console_raw(s, n);
	console_raw("\n", 1);
	console_unlock(taken);
	return (int)n + 1;
}
