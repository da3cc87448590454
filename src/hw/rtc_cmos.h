/*
 * The MC146818 CMOS clock, as much as Linux reads at boot: the wall-clock
 * time (host UTC, BCD, 24-hour) with "update in progress" always clear.
 * Without it every read of port 0x71 answers 0xff, "update in progress" never
 * clears, and Linux polls it twenty thousand times (each an exit) before it
 * gives up on the time.  The FADT still says "no CMOS RTC": Linux does not
 * bind its RTC driver (alarms, interrupts) to this.
 */
#ifndef KICKVM_HW_RTC_CMOS_H
#define KICKVM_HW_RTC_CMOS_H

struct machine;
struct rtc_cmos;

#define RTC_CMOS_PORT 0x70  /* index at 0x70, data at 0x71 */

int rtc_cmos_create(struct machine *m, struct rtc_cmos **out);
void rtc_cmos_destroy(struct rtc_cmos *rtc);

#endif
