/* A minimal 8250 UART: transmit only, enough for a console. */
#ifndef KICKVM_HW_UART8250_H
#define KICKVM_HW_UART8250_H

#include <stdint.h>
#include <stdio.h>

struct machine;
struct uart8250;

/* Create the UART at @port in the machine's I/O space, printing to @out. */
int uart8250_create(struct machine *m, uint16_t port, FILE *out, struct uart8250 **uartp);
void uart8250_destroy(struct uart8250 *uart);
/* Print @c as if the guest had written it (the system device's PUTC uses it). */
void uart8250_putc(struct uart8250 *uart, char c);
/* Characters printed so far. */
uint64_t uart8250_chars(const struct uart8250 *uart);

#endif
