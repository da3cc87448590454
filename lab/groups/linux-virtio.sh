# linux-virtio (issue 4, point 3): Debian's kernel under kickvm drives
# kickvm's virtio-blk (on an iothread) and virtio-rng with its own drivers,
# once with ioeventfd on and once off.  The nested guest runs
# lab/guest-tests/virtio.sh (kickvm.test=virtio): an O_DIRECT write and read
# back, a flush, /dev/hwrng, virtio_blk unloaded and loaded again.  Here:
# kickvm exits 0, the guest's PASS markers are there, the disk image holds
# what the guest wrote, and --stats shows the doorbells on the path asked
# for: with ioeventfd on every virtio-blk doorbell on KVM's ioeventfd and
# none trapped; with --ioeventfd=off every one in the userspace fallback.
# lab-timeout: 450
. /lab/lib.sh
K=/kickvm/bin/kickvm
N=/lab/nested
SIZE=16777216
status=0

# stat_queue LOG DEVICE FIELD: FIELD ("kvm", "userspace fallback", "trapped",
# "doorbells", "interrupts") summed over DEVICE's queue lines.
stat_queue() {
	awk -v dev=" $2 " -v f="$3" '
		/^ [^ ]/ { in_dev = (index($0, dev) == 1) }
		in_dev && /^  queue [0-9]+:/ {
			s = $0; i = index(s, f " ")
			if (i) { s = substr(s, i + length(f) + 1); n += s + 0 }
		}
		END { print n + 0 }' "$1"
}
# trapped LOG DEVICE: the device line's "doorbell writes trapped N".
trapped() {
	sed -n "s/^ $2 (.*doorbell writes trapped \([0-9]*\).*/\1/p" "$1" | tr -d '\r'
}

# tsc=reliable: see lab/groups/linux.sh.
run() {  # run on|off
	io=$1 log=/tmp/virtio-$1.log
	echo "linux-virtio: === ioeventfd $io ==="
	rm -f /tmp/disk.img
	truncate -s $SIZE /tmp/disk.img
	start=$(date +%s)
	{ limited $K run -m 512M -c 2 --stats --ioeventfd $io --kernel $N/vmlinuz \
		--initrd $N/initrd.cpio.gz -object iothread,id=io0 \
		-device virtio-blk,file=/tmp/disk.img,iothread=io0 -device virtio-rng \
		-a "console=ttyS0 panic=-1 tsc=reliable kickvm.test=virtio"; echo "kickvm-exit=$?" > /tmp/rc.$io; } 2>&1 |
		tee $log
	rc=$(sed -n 's/kickvm-exit=//p' /tmp/rc.$io)
	secs=$(( $(date +%s) - start ))
	bad() { echo "linux-virtio: FAIL: ioeventfd $io: $*"; status=1; }
	[ "$rc" = 0 ] || bad "kickvm $(status_words "$rc") after ${secs}s"
	grep -q "KICKVM-VIRTIO: PASS" $log || bad "no KICKVM-VIRTIO: PASS from the guest's test"
	grep -q "KICKVM-GUEST: PASS" $log || bad "no KICKVM-GUEST: PASS marker"
	# What the guest wrote is in the image, at the start and at the end.
	seq -w 1 1000000 | head -c 1048576 > /tmp/pattern.bin
	head -c 1048576 /tmp/disk.img | cmp - /tmp/pattern.bin || bad "the image lacks the guest's data"
	head -c 65536 /tmp/pattern.bin > /tmp/pattern-tail.bin
	tail -c 65536 /tmp/disk.img | cmp - /tmp/pattern-tail.bin || bad "the image's last 64 KiB lack the guest's data"
	blk_db=$(stat_queue $log virtio-blk0 doorbells)
	blk_kvm=$(stat_queue $log virtio-blk0 kvm)
	blk_fb=$(stat_queue $log virtio-blk0 "userspace fallback")
	blk_tr=$(trapped $log virtio-blk0)
	rng_db=$(stat_queue $log virtio-rng0 doorbells)
	rng_tr=$(trapped $log virtio-rng0)
	flushes=$(sed -n 's/^  requests: .*flush \([0-9]*\),.*/\1/p' $log | head -1)
	echo "linux-virtio: ioeventfd $io: virtio-blk doorbells $blk_db (kvm $blk_kvm, fallback $blk_fb," \
	     "trapped ${blk_tr:-?}), flushes ${flushes:-?}; virtio-rng doorbells $rng_db (trapped ${rng_tr:-?})"
	[ "$blk_db" -gt 0 ] || bad "no virtio-blk doorbells in --stats"
	[ "$rng_db" -gt 0 ] || bad "no virtio-rng doorbells in --stats"
	[ "$blk_tr" = 0 ] || bad "virtio-blk: doorbell writes trapped ${blk_tr:-missing}, expected 0"
	[ "$rng_tr" = 0 ] || bad "virtio-rng: doorbell writes trapped ${rng_tr:-missing}, expected 0"
	[ "${flushes:-0}" -gt 0 ] || bad "virtio-blk served no flush"
	if [ $io = on ]; then
		[ "$blk_kvm" -gt 0 ] || bad "virtio-blk: no doorbell on KVM's ioeventfd"
		[ "$blk_fb" = 0 ] || bad "virtio-blk: $blk_fb doorbells in the userspace fallback"
	else
		[ "$blk_kvm" = 0 ] || bad "virtio-blk: $blk_kvm doorbells on KVM's ioeventfd with --ioeventfd off"
		[ "$blk_fb" -gt 0 ] || bad "virtio-blk: no doorbell in the userspace fallback"
	fi
	echo "linux-virtio: ioeventfd $io done in ${secs}s"
}

run on
run off
exit $status
