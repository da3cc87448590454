/*
 * Minimal ACPI tables (why ACPI: include/kickvm/acpi.h), built as bytes at
 * the offsets the ACPI 6.x specification gives, and a DSDT assembled by a
 * few AML helpers below.  Everything is laid out in a host buffer first and
 * written to guest RAM in one go.
 */
#include <errno.h>
#include <string.h>

#include "kickvm/acpi.h"
#include "kickvm/guest_mem.h"
#include "kickvm/pci.h"

#define ACPI_BUF 4096       /* everything below fits in well under this */
#define HDR_LEN  36
#define IOAPIC_ADDR 0xfec00000u
#define LAPIC_ADDR  0xfee00000u

/* FADT (revision 6, 276 bytes): the offsets we fill. */
#define FADT_LEN            276
#define FADT_DSDT           40
#define FADT_IAPC_BOOT_ARCH 109
#define FADT_FLAGS          112
#define FADT_RESET_REG      116
#define FADT_RESET_VALUE    128
#define FADT_MINOR_VERSION  131
#define FADT_X_DSDT         140
#define FADT_SLEEP_CONTROL  244
#define FADT_SLEEP_STATUS   256
#define FADT_HYPERVISOR_ID  268

#define FADT_F_PWR_BUTTON   (1u << 4)   /* no fixed power button */
#define FADT_F_SLP_BUTTON   (1u << 5)   /* no fixed sleep button */
#define FADT_F_RESET_REG    (1u << 10)
#define FADT_F_HW_REDUCED   (1u << 20)
#define BOOT_ARCH_NO_VGA    (1u << 2)   /* Linux leaves VGA alone */
#define BOOT_ARCH_NO_CMOS   (1u << 5)   /* and does not register an RTC */
#define GAS_SYSTEM_IO       1
#define GAS_ACCESS_BYTE     1

struct tbuf {
	uint8_t b[ACPI_BUF];
	size_t len;
};

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

static uint8_t checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;

	while (len--)
		sum += *p++;
	return (uint8_t)-sum;
}

/* Reserve @len bytes at the next 16-byte boundary; NULL when full. */
static uint8_t *tbuf_alloc(struct tbuf *t, size_t len, size_t *off)
{
	size_t at = (t->len + 15) & ~(size_t)15;

	if (at + len > sizeof(t->b))
		return NULL;
	*off = at;
	t->len = at + len;
	return t->b + at;
}

static void header(uint8_t *p, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(p, sig, 4);
	put32(p + 4, len);
	p[8] = rev;
	memcpy(p + 10, "KICKVM", 6);
	memcpy(p + 16, "KICKVM  ", 8);
	put32(p + 24, 1);
	memcpy(p + 28, "KVMM", 4);
	put32(p + 32, 1);
}

static void finish(uint8_t *p, uint32_t len)
{
	p[9] = 0;
	p[9] = checksum(p, len);
}

/* A Generic Address Structure for one byte-wide I/O port. */
static void gas_io8(uint8_t *p, uint16_t port)
{
	p[0] = GAS_SYSTEM_IO;
	p[1] = 8;              /* bit width */
	p[2] = 0;              /* bit offset */
	p[3] = GAS_ACCESS_BYTE;
	put64(p + 4, port);
}

/* ---- AML --------------------------------------------------------------------------
 * Just what the DSDT needs: names, integers, EISA ids, a package, a buffer,
 * Scope and Device.  A block is built into its own buffer, then emitted
 * behind its opcode and PkgLength. */

struct aml {
	uint8_t b[512];
	size_t len;
	int err;
};

static void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (a->len + n > sizeof(a->b)) {
		a->err = -ENOSPC;
		return;
	}
	memcpy(a->b + a->len, p, n);
	a->len += n;
}

static void aml_byte(struct aml *a, uint8_t v) { aml_bytes(a, &v, 1); }

/* PkgLength counts itself: 1 byte up to 63, else 2-4 bytes (ACPI 20.2.4). */
static void aml_pkglen(struct aml *a, size_t content)
{
	size_t n = content + 1 <= 0x3f ? 1 : content + 2 <= 0xfff ? 2 : 3;
	size_t total = content + n;

	if (n == 1) {
		aml_byte(a, (uint8_t)total);
		return;
	}
	aml_byte(a, (uint8_t)(((n - 1) << 6) | (total & 0xf)));
	aml_byte(a, (uint8_t)(total >> 4));
	if (n == 3)
		aml_byte(a, (uint8_t)(total >> 12));
}

/* op [ext] PkgLength body */
static void aml_block(struct aml *a, const uint8_t *op, size_t oplen, const struct aml *body)
{
	if (body->err)
		a->err = body->err;
	aml_bytes(a, op, oplen);
	aml_pkglen(a, body->len);
	aml_bytes(a, body->b, body->len);
}

static void aml_name(struct aml *a, const char seg[4])
{
	aml_byte(a, 0x08);              /* NameOp */
	aml_bytes(a, seg, 4);
}

static void aml_int(struct aml *a, uint32_t v)
{
	if (v == 0) {
		aml_byte(a, 0x00);      /* ZeroOp */
	} else if (v <= 0xff) {
		aml_byte(a, 0x0a);      /* BytePrefix */
		aml_byte(a, (uint8_t)v);
	} else {
		uint8_t d[4];

		aml_byte(a, 0x0c);      /* DWordPrefix */
		put32(d, v);
		aml_bytes(a, d, 4);
	}
}

/* EisaId("PNP0A08"): three 5-bit letters and four hex digits, big-endian. */
static void aml_eisaid(struct aml *a, const char id[7])
{
	uint32_t hex = 0;
	uint8_t d[4];

	for (int i = 3; i < 7; i++)
		hex = hex << 4 | (uint32_t)(id[i] <= '9' ? id[i] - '0' : id[i] - 'A' + 10);
	d[0] = (uint8_t)(((id[0] - 0x40) << 2) | ((id[1] - 0x40) >> 3));
	d[1] = (uint8_t)((((id[1] - 0x40) & 7) << 5) | (id[2] - 0x40));
	d[2] = (uint8_t)(hex >> 8);
	d[3] = (uint8_t)hex;
	aml_byte(a, 0x0c);
	aml_bytes(a, d, 4);
}

/* Word Address Space descriptor (bus numbers or I/O), producer, fixed. */
static void res_word(struct aml *a, uint8_t type, uint8_t tflags, uint16_t min, uint16_t max)
{
	uint8_t d[16] = { 0x88, 13, 0, type, 0x0c, tflags };

	put16(d + 8, min);
	put16(d + 10, max);
	put16(d + 14, (uint16_t)(max - min + 1));
	aml_bytes(a, d, sizeof(d));
}

/* DWord memory descriptor: producer, fixed, cacheable, read/write. */
static void res_dword_mem(struct aml *a, uint32_t min, uint32_t max)
{
	uint8_t d[26] = { 0x87, 23, 0, 0, 0x0c, 0x03 };

	put32(d + 10, min);
	put32(d + 14, max);
	put32(d + 22, max - min + 1);
	aml_bytes(a, d, sizeof(d));
}

/* Name (_CRS, ResourceTemplate () { @res... }): the template is a buffer. */
static void aml_crs(struct aml *a, const struct aml *res)
{
	struct aml buf = { .len = 0 };

	aml_int(&buf, (uint32_t)res->len + 2);                 /* buffer size */
	aml_bytes(&buf, res->b, res->len);
	aml_byte(&buf, 0x79);                                  /* end tag */
	aml_byte(&buf, 0x00);
	if (res->err)
		buf.err = res->err;
	aml_name(a, "_CRS");
	aml_block(a, (const uint8_t[]){ 0x11 }, 1, &buf);      /* BufferOp */
}

/* The host bridge's resources: Linux only scans the buses and places BARs in
 * the windows a PNP0A08 device declares. */
static void pci_crs(struct aml *a)
{
	static const uint8_t cf8_ports[] = { 0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08 };
	struct aml res = { .len = 0 };

	res_word(&res, 2, 0, 0, 0xff);                         /* buses 0-255 */
	aml_bytes(&res, cf8_ports, sizeof(cf8_ports));         /* 0xcf8-0xcff */
	res_word(&res, 1, 3, 0x0000, 0x0cf7);                  /* I/O below and */
	res_word(&res, 1, 3, 0x0d00, 0xffff);                  /* above them */
	res_dword_mem(&res, (uint32_t)PCI_MMIO_WINDOW,
		      (uint32_t)(PCI_MMIO_WINDOW + PCI_MMIO_WINDOW_SIZE - 1));
	aml_crs(a, &res);
}

/*
 * COM1.  Why it must be here: with a hardware-reduced FADT Linux has no
 * legacy PIC and maps no ISA IRQ by itself, so the 8250 driver's built-in
 * "ttyS0 on IRQ 4" cannot get its interrupt, the port fails to start, and
 * every write to the console tty fails (the kernel's own printk still works:
 * it polls).  Declared here, the port's IRQ 4 is registered as GSI 4.
 */
static void com1_device(struct aml *a)
{
	static const uint8_t com1[] = {
		0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08,  /* I/O 0x3f8-0x3ff */
		0x22, 0x10, 0x00,                                /* IRQNoFlags {4} */
	};
	struct aml res = { .len = 0 }, body = { .len = 0 };

	aml_bytes(&res, com1, sizeof(com1));
	aml_bytes(&body, "COM1", 4);
	aml_name(&body, "_HID");
	aml_eisaid(&body, "PNP0501");
	aml_name(&body, "_UID");
	aml_int(&body, 1);
	aml_crs(&body, &res);
	aml_block(a, (const uint8_t[]){ 0x5b, 0x82 }, 2, &body);   /* DeviceOp */
}

/*
 * DefinitionBlock: Name (_S5, Package () { S5, 0 })
 *                  Scope (\_SB) { Device (PCI0) { _HID PNP0A08, _CID PNP0A03,
 *                                                  _SEG 0, _UID 0, _BBN 0, _CRS }
 *                                 Device (COM1) { _HID PNP0501, _UID 1, _CRS } }
 */
static int build_dsdt_aml(struct aml *out, uint8_t s5)
{
	struct aml pkg = { .len = 0 }, dev = { .len = 0 }, sb = { .len = 0 };

	aml_byte(&pkg, 2);                                     /* NumElements */
	aml_int(&pkg, s5);
	aml_int(&pkg, 0);
	aml_name(out, "_S5_");
	aml_block(out, (const uint8_t[]){ 0x12 }, 1, &pkg);    /* PackageOp */

	aml_name(&dev, "_HID");
	aml_eisaid(&dev, "PNP0A08");
	aml_name(&dev, "_CID");
	aml_eisaid(&dev, "PNP0A03");
	aml_name(&dev, "_SEG");
	aml_int(&dev, 0);
	aml_name(&dev, "_UID");
	aml_int(&dev, 0);
	aml_name(&dev, "_BBN");
	aml_int(&dev, 0);
	pci_crs(&dev);

	{
		struct aml body = { .len = 0 };

		aml_bytes(&body, "PCI0", 4);
		aml_bytes(&body, dev.b, dev.len);
		body.err = dev.err;
		aml_block(&sb, (const uint8_t[]){ 0x5b, 0x82 }, 2, &body);  /* DeviceOp */
	}
	com1_device(&sb);
	{
		struct aml body = { .len = 0 };

		aml_bytes(&body, "\\_SB_", 5);
		aml_bytes(&body, sb.b, sb.len);
		body.err = sb.err;
		aml_block(out, (const uint8_t[]){ 0x10 }, 1, &body);        /* ScopeOp */
	}
	return out->err;
}

/* ---- tables ------------------------------------------------------------------------ */

static int add_dsdt(struct tbuf *t, uint8_t s5, size_t *off)
{
	struct aml aml = { .len = 0 };
	uint8_t *p;
	int ret = build_dsdt_aml(&aml, s5);

	if (ret)
		return ret;
	p = tbuf_alloc(t, HDR_LEN + aml.len, off);
	if (!p)
		return -ENOSPC;
	header(p, "DSDT", (uint32_t)(HDR_LEN + aml.len), 2);
	memcpy(p + HDR_LEN, aml.b, aml.len);
	finish(p, (uint32_t)(HDR_LEN + aml.len));
	return 0;
}

static int add_fadt(struct tbuf *t, const struct acpi_config *cfg, uint64_t dsdt, size_t *off)
{
	uint8_t *p = tbuf_alloc(t, FADT_LEN, off);

	if (!p)
		return -ENOSPC;
	header(p, "FACP", FADT_LEN, 6);
	put32(p + FADT_DSDT, (uint32_t)dsdt);
	put16(p + FADT_IAPC_BOOT_ARCH, BOOT_ARCH_NO_VGA | BOOT_ARCH_NO_CMOS);
	/* Hardware-reduced: no PM1 blocks, no SCI, no PM timer, no GPEs. */
	put32(p + FADT_FLAGS, FADT_F_HW_REDUCED | FADT_F_RESET_REG |
	      FADT_F_PWR_BUTTON | FADT_F_SLP_BUTTON);
	gas_io8(p + FADT_RESET_REG, cfg->reset_port);
	p[FADT_RESET_VALUE] = cfg->reset_value;
	p[FADT_MINOR_VERSION] = 5;
	put64(p + FADT_X_DSDT, dsdt);
	gas_io8(p + FADT_SLEEP_CONTROL, cfg->sleep_control_port);
	gas_io8(p + FADT_SLEEP_STATUS, cfg->sleep_status_port);
	memcpy(p + FADT_HYPERVISOR_ID, "KickVM\0\0", 8);
	finish(p, FADT_LEN);
	return 0;
}

/*
 * MADT: a LAPIC per vCPU, the in-kernel IOAPIC (GSI 0-23), LINT1 as NMI.
 * No interrupt source overrides: kickvm's GSI routing (src/kvm) wires ISA
 * IRQ n to IOAPIC pin n, the PIT included, so the identity mapping Linux
 * assumes without overrides is the truth.  (QEMU's IRQ0 -> GSI2 override
 * matches QEMU's routing, not ours: it would leave Linux's timer on a silent
 * pin.)
 */
static int add_madt(struct tbuf *t, int nr_cpus, size_t *off)
{
	uint32_t len = HDR_LEN + 8 + 8 * (uint32_t)nr_cpus + 12 + 6;
	uint8_t *p = tbuf_alloc(t, len, off), *e;

	if (!p)
		return -ENOSPC;
	header(p, "APIC", len, 5);
	put32(p + 36, LAPIC_ADDR);
	put32(p + 40, 1);                     /* PCAT_COMPAT: there is an 8259 to mask */
	e = p + 44;
	for (int i = 0; i < nr_cpus; i++, e += 8) {
		e[0] = 0;                     /* Processor Local APIC */
		e[1] = 8;
		e[2] = (uint8_t)i;            /* ACPI processor UID */
		e[3] = (uint8_t)i;            /* APIC id (vcpu_create: = index) */
		put32(e + 4, 1);              /* enabled */
	}
	e[0] = 1;                             /* I/O APIC */
	e[1] = 12;
	e[2] = 0;                             /* IOAPIC id */
	put32(e + 4, IOAPIC_ADDR);
	put32(e + 8, 0);                      /* GSI base */
	e += 12;
	e[0] = 4;                             /* Local APIC NMI */
	e[1] = 6;
	e[2] = 0xff;                          /* every processor */
	put16(e + 3, 0);                      /* bus-conforming polarity/trigger */
	e[5] = 1;                             /* LINT1 */
	finish(p, len);
	return 0;
}

static int add_mcfg(struct tbuf *t, size_t *off)
{
	const uint32_t len = HDR_LEN + 8 + 16;
	uint8_t *p = tbuf_alloc(t, len, off);

	if (!p)
		return -ENOSPC;
	header(p, "MCFG", len, 1);
	put64(p + 44, PCI_ECAM_BASE);
	put16(p + 52, 0);                     /* segment */
	p[54] = 0;                            /* buses 0 */
	p[55] = (uint8_t)((PCI_ECAM_SIZE >> 20) - 1);  /* .. 255 (1 MiB per bus) */
	finish(p, len);
	return 0;
}

int acpi_build(struct guest_mem *gm, const struct acpi_config *cfg, uint64_t *rsdp)
{
	struct tbuf t = { .len = 0 };
	size_t rsdp_off, xsdt_off, dsdt_off, fadt_off, madt_off, mcfg_off;
	uint8_t *r, *x;
	int ret;

	if (cfg->nr_cpus < 1 || cfg->nr_cpus > 255)
		return -EINVAL;
	r = tbuf_alloc(&t, 36, &rsdp_off);
	x = tbuf_alloc(&t, HDR_LEN + 3 * 8, &xsdt_off);
	if (!r || !x)
		return -ENOSPC;
	ret = add_dsdt(&t, cfg->s5_sleep_type, &dsdt_off);
	if (!ret)
		ret = add_fadt(&t, cfg, ACPI_TABLES_BASE + dsdt_off, &fadt_off);
	if (!ret)
		ret = add_madt(&t, cfg->nr_cpus, &madt_off);
	if (!ret)
		ret = add_mcfg(&t, &mcfg_off);
	if (ret)
		return ret;

	header(x, "XSDT", HDR_LEN + 3 * 8, 1);
	put64(x + HDR_LEN, ACPI_TABLES_BASE + fadt_off);
	put64(x + HDR_LEN + 8, ACPI_TABLES_BASE + madt_off);
	put64(x + HDR_LEN + 16, ACPI_TABLES_BASE + mcfg_off);
	finish(x, HDR_LEN + 3 * 8);

	memcpy(r, "RSD PTR ", 8);
	memcpy(r + 9, "KICKVM", 6);
	r[15] = 2;                            /* ACPI 2.0+: XSDT */
	put32(r + 16, 0);                     /* no RSDT */
	put32(r + 20, 36);
	put64(r + 24, ACPI_TABLES_BASE + xsdt_off);
	r[8] = checksum(r, 20);
	r[32] = checksum(r, 36);

	_Static_assert(ACPI_BUF <= ACPI_TABLES_SIZE, "tables overflow their area");
	ret = guest_mem_write(gm, ACPI_TABLES_BASE, t.b, t.len);
	if (ret)
		return ret;
	*rsdp = ACPI_TABLES_BASE + rsdp_off;
	return 0;
}
