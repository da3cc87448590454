/*
 * 8250 UART, transmit side only.  The guest's polling loop reads LSR and sees
 * the transmitter always empty; what it writes to THR goes straight to the
 * console stream, flushed at each newline so that the output of a guest that
 * dies is not lost.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <pthread.h>

#include "hw/uart8250.h"
#include "kickvm/machine.h"

#define UART_THR 0  /* transmit holding (DLAB=0) */
#define UART_LCR 3
#define UART_LSR 5
#define UART_LCR_DLAB 0x80
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40

struct uart8250 {
	struct machine *m;
	struct mem_region *mr;
	FILE *out;
	pthread_mutex_t lock;  /* two vCPUs may print at once */
	uint8_t regs[8];
	_Atomic uint64_t chars;
};

void uart8250_putc(struct uart8250 *uart, char c)
{
	pthread_mutex_lock(&uart->lock);
	fputc(c, uart->out);
	if (c == '\n')
		fflush(uart->out);
	pthread_mutex_unlock(&uart->lock);
	uart->chars++;
}

uint64_t uart8250_chars(const struct uart8250 *uart)
{
	return uart->chars;
}

static uint64_t uart_read(void *opaque, uint64_t offset, unsigned size)
{
	struct uart8250 *uart = opaque;

	(void)size;
	if (offset == UART_LSR)
		return UART_LSR_THRE | UART_LSR_TEMT;
	return uart->regs[offset & 7];
}

static void uart_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct uart8250 *uart = opaque;

	(void)size;
	if (offset == UART_THR && !(uart->regs[UART_LCR] & UART_LCR_DLAB)) {
		uart8250_putc(uart, (char)data);
		return;
	}
	uart->regs[offset & 7] = (uint8_t)data;
}

static const struct mr_ops uart_ops = {
	.read = uart_read,
	.write = uart_write,
	.valid_min = 1, .valid_max = 1,
};

int uart8250_create(struct machine *m, uint16_t port, FILE *out, struct uart8250 **uartp)
{
	struct uart8250 *uart = calloc(1, sizeof(*uart));
	int ret;

	if (!uart)
		return -ENOMEM;
	uart->m = m;
	uart->out = out ? out : stdout;
	pthread_mutex_init(&uart->lock, NULL);
	uart->mr = mr_new_io("serial", 8, &uart_ops, uart);
	if (!uart->mr) {
		free(uart);
		return -ENOMEM;
	}
	ret = mr_add_subregion(m->io_root, port, uart->mr, 0);
	if (ret < 0) {
		mr_free(uart->mr);
		free(uart);
		return ret;
	}
	*uartp = uart;
	return 0;
}

void uart8250_destroy(struct uart8250 *uart)
{
	if (!uart)
		return;
	mr_del_subregion(uart->m->io_root, uart->mr);
	mr_free(uart->mr);
	fflush(uart->out);
	pthread_mutex_destroy(&uart->lock);
	free(uart);
}
