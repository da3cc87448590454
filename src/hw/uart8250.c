/*
 * 8250/16550A UART, transmit side, with the register semantics Linux's 8250
 * driver probes and relies on:
 *  - IER/IIR with the THR-empty and received-data interrupts on ISA IRQ 4
 *    (kvm_irq_line into the in-kernel PIC and IOAPIC);
 *  - FCR: FIFO enable shows as 0xc0 in IIR, so the port probes as a 16550A;
 *  - MCR loopback: THR goes to RBR and MSR mirrors MCR, as the driver's
 *    loopback probe expects;
 *  - LCR/DLAB, DLL/DLM, SCR kept; LSR always says the transmitter is empty.
 * Transmission is instant: a THR write reaches the console stream at once
 * (flushed at each newline, so a dying guest's output is not lost), then THR
 * is empty again.  There is no receive path from the host: stdin stays
 * unconnected.  kickvm's test guests poll LSR with IER at 0 and never see an
 * interrupt.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <pthread.h>

#include "hw/uart8250.h"
#include "kickvm/log.h"
#include "kickvm/machine.h"

#define UART_IRQ 4           /* COM1 on ISA */

#define UART_RBR 0           /* receive buffer (read, DLAB=0) */
#define UART_THR 0           /* transmit holding (write, DLAB=0) */
#define UART_IER 1
#define UART_IIR 2           /* read */
#define UART_FCR 2           /* write */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define IER_RDI  0x01
#define IER_THRI 0x02
#define IER_MASK 0x0f
#define IIR_NO_INT 0x01
#define IIR_THRI   0x02
#define IIR_RDI    0x04
#define IIR_FIFO   0xc0
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RCVR 0x02
#define LCR_DLAB 0x80
#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f
#define LSR_DR   0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MSR_CTS  0x10
#define MSR_DSR  0x20
#define MSR_RI   0x40
#define MSR_DCD  0x80

struct uart8250 {
	struct machine *m;
	struct mem_region *mr;
	FILE *out;
	pthread_mutex_t lock;  /* registers; and two vCPUs may print at once */
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr, rbr;
	bool data_ready;       /* RBR holds a byte (loopback only) */
	bool thr_ipending;     /* THR-empty interrupt pending until IIR read / THR write */
	bool irq_level;
	bool irq_failed;
	_Atomic uint64_t chars;
};

static void emit(struct uart8250 *uart, char c)
{
	fputc(c, uart->out);
	if (c == '\n')
		fflush(uart->out);
	uart->chars++;
}

void uart8250_putc(struct uart8250 *uart, char c)
{
	pthread_mutex_lock(&uart->lock);
	emit(uart, c);
	pthread_mutex_unlock(&uart->lock);
}

uint64_t uart8250_chars(const struct uart8250 *uart)
{
	return uart->chars;
}

/* Highest-priority pending source, as IIR reports it. */
static uint8_t pending_iir(const struct uart8250 *uart)
{
	if ((uart->ier & IER_RDI) && uart->data_ready)
		return IIR_RDI;
	if ((uart->ier & IER_THRI) && uart->thr_ipending)
		return IIR_THRI;
	return IIR_NO_INT;
}

/* Called with the lock held: drive IRQ 4 to match IIR. ISA interrupts are
 * edge-triggered, so the line only moves when the answer changes. */
static void update_irq(struct uart8250 *uart)
{
	bool level = pending_iir(uart) != IIR_NO_INT;
	int ret;

	if (level == uart->irq_level)
		return;
	uart->irq_level = level;
	ret = kvm_irq_line(uart->m->kvm, UART_IRQ, level);
	if (ret < 0 && !uart->irq_failed) {
		uart->irq_failed = true;
		log_error("serial", "cannot set IRQ %d: %d", UART_IRQ, ret);
	}
}

static uint8_t msr(const struct uart8250 *uart)
{
	uint8_t mcr = uart->mcr;

	if (!(mcr & MCR_LOOP))
		return MSR_DCD | MSR_DSR | MSR_CTS;  /* a cable with the other end up */
	/* Loopback wires the modem outputs back to the inputs. */
	return (mcr & MCR_RTS ? MSR_CTS : 0) | (mcr & MCR_DTR ? MSR_DSR : 0) |
	       (mcr & MCR_OUT1 ? MSR_RI : 0) | (mcr & MCR_OUT2 ? MSR_DCD : 0);
}

static uint64_t uart_read(void *opaque, uint64_t offset, unsigned size)
{
	struct uart8250 *uart = opaque;
	bool dlab;
	uint8_t v;

	(void)size;
	pthread_mutex_lock(&uart->lock);
	dlab = uart->lcr & LCR_DLAB;
	switch (offset) {
	case UART_RBR:
		if (dlab) {
			v = uart->dll;
			break;
		}
		v = uart->rbr;
		uart->data_ready = false;
		break;
	case UART_IER:
		v = dlab ? uart->dlm : uart->ier;
		break;
	case UART_IIR:
		v = pending_iir(uart);
		/* Reading IIR acknowledges a THR-empty interrupt it reports. */
		if (v == IIR_THRI)
			uart->thr_ipending = false;
		if (uart->fcr & FCR_ENABLE)
			v |= IIR_FIFO;
		break;
	case UART_LCR:
		v = uart->lcr;
		break;
	case UART_MCR:
		v = uart->mcr;
		break;
	case UART_LSR:
		v = LSR_THRE | LSR_TEMT | (uart->data_ready ? LSR_DR : 0);
		break;
	case UART_MSR:
		v = msr(uart);
		break;
	default:
		v = uart->scr;
		break;
	}
	update_irq(uart);
	pthread_mutex_unlock(&uart->lock);
	return v;
}

static void transmit(struct uart8250 *uart, uint8_t c)
{
	/* THR is full for a moment: drop a THR-empty interrupt, so the line
	 * moves and an edge-triggered IOAPIC pin sees the next one. */
	uart->thr_ipending = false;
	update_irq(uart);
	if (uart->mcr & MCR_LOOP) {
		uart->rbr = c;
		uart->data_ready = true;
	} else {
		emit(uart, (char)c);
	}
	uart->thr_ipending = true;
}

static void uart_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct uart8250 *uart = opaque;
	bool dlab;
	uint8_t v = (uint8_t)data;

	(void)size;
	pthread_mutex_lock(&uart->lock);
	dlab = uart->lcr & LCR_DLAB;
	switch (offset) {
	case UART_THR:
		if (dlab)
			uart->dll = v;
		else
			transmit(uart, v);
		break;
	case UART_IER:
		if (dlab) {
			uart->dlm = v;
			break;
		}
		/* Enabling the THR-empty interrupt while THR is empty (always,
		 * here) raises it at once: Linux's start_tx relies on that. */
		if ((v & IER_THRI) && !(uart->ier & IER_THRI))
			uart->thr_ipending = true;
		uart->ier = v & IER_MASK;
		break;
	case UART_FCR:
		uart->fcr = v & (FCR_ENABLE | 0xc0);
		if (v & FCR_CLEAR_RCVR)
			uart->data_ready = false;
		break;
	case UART_LCR:
		uart->lcr = v;
		break;
	case UART_MCR:
		uart->mcr = v & MCR_MASK;
		break;
	case UART_SCR:
		uart->scr = v;
		break;
	default:  /* LSR and MSR are read-only (factory test writes ignored) */
		break;
	}
	update_irq(uart);
	pthread_mutex_unlock(&uart->lock);
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
		pthread_mutex_destroy(&uart->lock);
		free(uart);
		return -ENOMEM;
	}
	ret = mr_add_subregion(m->io_root, port, uart->mr, 0);
	if (ret < 0) {
		mr_free(uart->mr);
		pthread_mutex_destroy(&uart->lock);
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
