# The nested guest's half of the linux-virtio group (lab/groups/linux-virtio.sh):
# Linux's own virtio_pci, virtio_blk and virtio_rng drive kickvm's devices.
# lab/guest-init has loaded the modules; this writes a known pattern to
# /dev/vda with O_DIRECT, reads it back, flushes, reads /dev/hwrng, unloads
# and reloads virtio_blk and reads the data again.  Exit 0 on success.
fail() { echo "virtio-test: FAIL: $*"; exit 1; }
BS=4096
N=256                        # 1 MiB
SIZE=16777216                # the disk the lab gives kickvm: 16 MiB

for m in virtio_pci virtio_blk virtio_rng; do
	grep -q "^$m " /proc/modules || insmod /lib/modules/$m.ko || fail "insmod $m"
done
wait_vda() {
	i=0
	while [ ! -b /dev/vda ]; do
		i=$((i + 1)); [ $i -gt 50 ] && fail "no /dev/vda"; sleep 0.1
	done
}
wait_vda
echo "virtio-test: /dev/vda $(blockdev --getsize64 /dev/vda) bytes, ro=$(blockdev --getro /dev/vda)," \
     "cache $(cat /sys/block/vda/queue/write_cache 2>/dev/null)"
[ "$(blockdev --getsize64 /dev/vda)" = $SIZE ] || fail "capacity is not $SIZE bytes"

# The pattern: the same command makes it on the lab side, which compares the
# disk image after kickvm has exited.
seq -w 1 1000000 | head -c $((BS * N)) > /pattern.bin
dd if=/pattern.bin of=/dev/vda bs=$BS count=$N oflag=direct conv=fsync,notrunc 2>/dev/null ||
	fail "O_DIRECT write"
# ... and at the last 64 KiB, to reach the end of the disk.
dd if=/pattern.bin of=/dev/vda bs=$BS count=16 seek=$((SIZE / BS - 16)) oflag=direct conv=fsync,notrunc 2>/dev/null ||
	fail "O_DIRECT write at the end"
dd if=/dev/vda of=/readback.bin bs=$BS count=$N iflag=direct 2>/dev/null || fail "O_DIRECT read"
cmp /pattern.bin /readback.bin || fail "read back differs from what was written"
dd if=/dev/vda of=/tail.bin bs=$BS count=16 skip=$((SIZE / BS - 16)) iflag=direct 2>/dev/null ||
	fail "O_DIRECT read at the end"
head -c $((BS * 16)) /pattern.bin | cmp - /tail.bin || fail "the last 64 KiB differ"
# Past the end: nothing to read, not an error.
[ "$(dd if=/dev/vda bs=$BS skip=$((SIZE / BS)) count=1 iflag=direct 2>/dev/null | wc -c)" = 0 ] ||
	fail "a read past the end returned data"
echo "virtio-test: O_DIRECT write and read back ok ($((BS * N)) bytes + 64 KiB at the end)"
sync
blockdev --flushbufs /dev/vda || fail "blockdev --flushbufs"
echo "virtio-test: flushed"

# virtio-rng: the hw_random core picks it (the only one there is).
echo "virtio-test: rng current: $(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)"
[ -c /dev/hwrng ] || fail "no /dev/hwrng"
timeout 30 dd if=/dev/hwrng of=/rng.bin bs=64 count=8 2>/dev/null
n=$(wc -c < /rng.bin)
[ "$n" -gt 0 ] || fail "/dev/hwrng gave nothing"
[ -n "$(od -An -tx1 /rng.bin | tr -d ' 0\n')" ] || fail "/dev/hwrng gave only zeros"
echo "virtio-test: read $n bytes from /dev/hwrng"

# Unload virtio_blk (the driver resets the device) and load it again.
rmmod virtio_blk || fail "rmmod virtio_blk"
[ ! -b /dev/vda ] || { sleep 1; [ ! -b /dev/vda ] || fail "/dev/vda still there after rmmod"; }
insmod /lib/modules/virtio_blk.ko || fail "insmod virtio_blk again"
wait_vda
dd if=/dev/vda of=/readback2.bin bs=$BS count=$N iflag=direct 2>/dev/null || fail "read after reload"
cmp /pattern.bin /readback2.bin || fail "data differs after reloading virtio_blk"
echo "virtio-test: virtio_blk unloaded and reloaded, data still there"
echo "KICKVM-VIRTIO: PASS"
