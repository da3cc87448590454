/* A read-mostly CMOS clock and RAM (what and why: rtc_cmos.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "hw/rtc_cmos.h"
#include "kickvm/machine.h"

#define CMOS_SIZE    128
#define NMI_DISABLE  0x80   /* bit 7 of the index: not a register bit */
#define REG_SEC      0x00
#define REG_MIN      0x02
#define REG_HOUR     0x04
#define REG_WDAY     0x06
#define REG_MDAY     0x07
#define REG_MON      0x08
#define REG_YEAR     0x09
#define REG_A        0x0a
#define REG_B        0x0b
#define REG_C        0x0c
#define REG_D        0x0d
#define REG_CENTURY  0x32
#define REG_A_32KHZ  0x26   /* divider on, 1024 Hz; UIP (bit 7) clear */
#define REG_B_24H    0x02   /* 24-hour, BCD, no interrupts */
#define REG_D_VRT    0x80   /* battery good */

struct rtc_cmos {
	struct machine *m;
	struct mem_region *mr;
	pthread_mutex_t lock;
	uint8_t index;
	uint8_t ram[CMOS_SIZE];
};

static uint8_t bcd(int v)
{
	return (uint8_t)((v / 10) << 4 | (v % 10));
}

static uint8_t clock_reg(uint8_t reg)
{
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	switch (reg) {
	case REG_SEC: return bcd(tm.tm_sec);
	case REG_MIN: return bcd(tm.tm_min);
	case REG_HOUR: return bcd(tm.tm_hour);
	case REG_WDAY: return bcd(tm.tm_wday + 1);
	case REG_MDAY: return bcd(tm.tm_mday);
	case REG_MON: return bcd(tm.tm_mon + 1);
	case REG_YEAR: return bcd(tm.tm_year % 100);
	default: return bcd((tm.tm_year + 1900) / 100);  /* REG_CENTURY */
	}
}

static uint64_t rtc_read(void *opaque, uint64_t offset, unsigned size)
{
	struct rtc_cmos *rtc = opaque;
	uint8_t reg, v;

	(void)size;
	if (offset == 0)
		return 0xff;  /* the index port is write-only */
	pthread_mutex_lock(&rtc->lock);
	reg = rtc->index;
	switch (reg) {
	case REG_SEC: case REG_MIN: case REG_HOUR: case REG_WDAY:
	case REG_MDAY: case REG_MON: case REG_YEAR: case REG_CENTURY:
		v = clock_reg(reg);
		break;
	case REG_A: v = REG_A_32KHZ; break;
	case REG_B: v = REG_B_24H; break;
	case REG_C: v = 0; break;          /* no interrupt flags, ever */
	case REG_D: v = REG_D_VRT; break;
	default: v = rtc->ram[reg]; break;
	}
	pthread_mutex_unlock(&rtc->lock);
	return v;
}

static void rtc_write(void *opaque, uint64_t offset, uint64_t data, unsigned size)
{
	struct rtc_cmos *rtc = opaque;

	(void)size;
	pthread_mutex_lock(&rtc->lock);
	if (offset == 0)
		rtc->index = (uint8_t)data & ~NMI_DISABLE;
	else if (rtc->index > REG_D && rtc->index != REG_CENTURY)
		rtc->ram[rtc->index] = (uint8_t)data;  /* the clock itself is the host's */
	pthread_mutex_unlock(&rtc->lock);
}

static const struct mr_ops rtc_ops = {
	.read = rtc_read, .write = rtc_write, .valid_min = 1, .valid_max = 1,
};

int rtc_cmos_create(struct machine *m, struct rtc_cmos **out)
{
	struct rtc_cmos *rtc = calloc(1, sizeof(*rtc));
	int ret;

	if (!rtc)
		return -ENOMEM;
	rtc->m = m;
	pthread_mutex_init(&rtc->lock, NULL);
	rtc->mr = mr_new_io("rtc-cmos", 2, &rtc_ops, rtc);
	ret = rtc->mr ? mr_add_subregion(m->io_root, RTC_CMOS_PORT, rtc->mr, 0) : -ENOMEM;
	if (ret < 0) {
		if (rtc->mr)
			mr_free(rtc->mr);
		pthread_mutex_destroy(&rtc->lock);
		free(rtc);
		return ret;
	}
	*out = rtc;
	return 0;
}

void rtc_cmos_destroy(struct rtc_cmos *rtc)
{
	if (!rtc)
		return;
	mr_del_subregion(rtc->m->io_root, rtc->mr);
	mr_free(rtc->mr);
	pthread_mutex_destroy(&rtc->lock);
	free(rtc);
}
