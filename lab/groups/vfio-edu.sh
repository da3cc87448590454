# vfio-edu (issue 8, point 8): QEMU's edu (1234:11e8) assigned to kickvm
# through vfio-pci, driven by kickvm's own test guest (kickvm-edu.elf):
# identification and liveness registers, factorials with their interrupt,
# interrupts raised on demand, DMA guest RAM -> edu -> guest RAM through the
# IOMMU, every MSI counted exactly by the guest.  The guest reports every
# BAR access it made (edu.reads, edu.writes); here they are held against
# kickvm's --stats:
#   1. x-no-mmap=on: every register access exits and is counted, one by one;
#   2. default (BAR0 mapped as a memory slot): none exits, and the MMIO exits
#      of the whole run drop by exactly the guest's access count;
#   3. the repeated-write mode, trapped: every write counted;
#   4. a device-write ioeventfd on the trapped liveness register
#      (x-device-ioeventfd=0:0x4:4:VALUE): the kernel performs the writes, no
#      exit, and `--info ioeventfds` shows it on the kernel's path;
#   5. options the device cannot take (x-msix-relocation=bar1 on a device
#      without MSI-X, an x-device-ioeventfd beyond its BAR): exit 2 with the
#      reason, and the device is left usable.
# lab-qemu: -device edu
# lab-timeout: 420
GROUP=vfio-edu
. /lab/lib/vfio.sh
G=/kickvm/guest/kickvm-edu.elf
VALUE=0x600dcafe
COUNT=2000
status=0
bad() { echo "$GROUP: FAIL: $*"; status=1; }

[ -f $G ] || fail "no $G in the lab (build guest/kickvm-edu.elf)"
edu=$(find_dev 0x1234 0x11e8) || fail "no edu device (QEMU -device edu)"
bind_vfio $edu

# guest_passed LOG WHAT MODE: kickvm exited 0 and the guest printed its PASS
# line; without them nothing else of the run means anything.
guest_passed() {
	[ "$rc" = 0 ] || fail "$2: kickvm exited $rc"
	grep -q "KICKVM-EDU: PASS $3" $1 || fail "$2: no 'KICKVM-EDU: PASS $3' from the guest"
}
# expect_stat LOG WHAT FIELD WANT: the device's FIELD in --stats is WANT.
expect_stat() {
	got=$(dev_stat $1 edu0 "$3")
	[ "$got" = "$4" ] || bad "$2: --stats for edu0: '$(stat_name "$3")' is $got, expected $4"
}

# ---- 1. everything trapped -------------------------------------------------------
# ioeventfd=off: no write may leave the trapped path, whatever kickvm offers.
L1=/tmp/edu-trapped.log
kickvm_run "test, x-no-mmap=on" 60 $L1 run --stats \
	-device vfio-pci,host=$edu,id=edu0,x-no-mmap=on,ioeventfd=off -a "mode=test" $G
guest_passed $L1 "x-no-mmap=on" test
r1=$(report $L1 edu.reads) w1=$(report $L1 edu.writes) i1=$(report $L1 edu.interrupts)
echo "$GROUP: x-no-mmap=on: the guest made $r1 register reads, $w1 writes, saw $i1 interrupts" \
     "(expected $(report $L1 edu.expected_interrupts))"
expect_stat $L1 "x-no-mmap=on" "$F_TRAPPED_READS" "$r1"
expect_stat $L1 "x-no-mmap=on" "$F_TRAPPED_WRITES" "$w1"
expect_stat $L1 "x-no-mmap=on" "$F_MSIX_TABLE" 0
grep -q "^  BAR 0: memory 0x100000 bytes at 0x[0-9a-f]*, all trapped" $L1 ||
	bad "x-no-mmap=on: --stats does not show BAR 0 all trapped"
# MSI goes straight from the device's eventfd to KVM (an irqfd): none of the
# guest's interrupts passes through kickvm.
expect_stat $L1 "x-no-mmap=on" "$F_IRQS_KICKVM" 0
dma=$(dev_stat $L1 edu0 "$F_DMA_BYTES")
[ "$dma" != missing ] && [ "$dma" -gt 0 ] || bad "x-no-mmap=on: no guest RAM DMA-mapped ($dma)"

# ---- 2. BAR0 mapped --------------------------------------------------------------------
L2=/tmp/edu-mapped.log
kickvm_run "test, mapped" 60 $L2 run --stats \
	-device vfio-pci,host=$edu,id=edu0 -a "mode=test" $G
guest_passed $L2 "mapped" test
r2=$(report $L2 edu.reads) w2=$(report $L2 edu.writes) i2=$(report $L2 edu.interrupts)
echo "$GROUP: mapped: the guest made $r2 register reads, $w2 writes, saw $i2 interrupts"
expect_stat $L2 "mapped" "$F_TRAPPED_READS" 0
expect_stat $L2 "mapped" "$F_TRAPPED_WRITES" 0
expect_stat $L2 "mapped" "$F_IRQS_KICKVM" 0
grep -q "^  BAR 0: memory 0x100000 bytes at 0x[0-9a-f]*, mapped (0 exits): +0x0-0xfffff" $L2 ||
	bad "mapped: --stats does not show all of BAR 0 mapped"
[ "$i1" = "$i2" ] || bad "the two runs saw $i1 and $i2 interrupts"
# Apart from the edu's registers both runs make the same MMIO exits (config
# space, ucalls) plus one per console character; so the trapped run exits
# exactly r1 + w1 more times.
e1=$(exits_but_console $L1) e2=$(exits_but_console $L2)
echo "$GROUP: MMIO exits other than console characters: $e1 trapped, $e2 mapped"
[ "$e1" != missing ] && [ "$e2" != missing ] && [ $(( e1 - e2 )) = $(( r1 + w1 )) ] ||
	bad "the trapped run exited $(( e1 - e2 )) more times than the mapped one, not $(( r1 + w1 ))"

# ---- 3. repeated writes, trapped -------------------------------------------------------
L3=/tmp/edu-writes.log
kickvm_run "writes, x-no-mmap=on" 60 $L3 run --stats \
	-device vfio-pci,host=$edu,id=edu0,x-no-mmap=on,ioeventfd=off \
	-a "mode=writes value=$VALUE count=$COUNT" $G
guest_passed $L3 "writes, trapped" writes
r3=$(report $L3 edu.reads) w3=$(report $L3 edu.writes)
[ "$w3" = $(( COUNT + 1 )) ] || bad "writes: the guest reports $w3 writes, not $(( COUNT + 1 ))"
expect_stat $L3 "writes, trapped" "$F_TRAPPED_READS" "$r3"
expect_stat $L3 "writes, trapped" "$F_TRAPPED_WRITES" "$w3"

# ---- 4. a device-write ioeventfd on the trapped liveness register ----------------
# The guest's COUNT writes of VALUE are done by the kernel (VFIO_DEVICE_IOEVENTFD
# behind a KVM ioeventfd): the register reads back ~VALUE, the run exits
# exactly COUNT times fewer than step 3 (only the one write of ~VALUE and the
# reads are trapped), and `--info ioeventfds` shows the entry on the path
# "kvm -> kernel".
L4=/tmp/edu-ioeventfd.log
kickvm_run "writes, device-write ioeventfd" 60 $L4 run --stats --info ioeventfds \
	-device vfio-pci,host=$edu,id=edu0,x-no-mmap=on,x-device-ioeventfd=0:0x4:4:$VALUE \
	-a "mode=writes value=$VALUE count=$COUNT" $G
guest_passed $L4 "writes, device-write ioeventfd" writes
r4=$(report $L4 edu.reads) w4=$(report $L4 edu.writes)
expect_stat $L4 "device-write ioeventfd" "$F_TRAPPED_READS" "$r4"
expect_stat $L4 "device-write ioeventfd" "$F_TRAPPED_WRITES" 1
grep -q "bar0+0x4 len 4 data $VALUE static: kvm -> kernel" $L4 ||
	bad "device-write ioeventfd: --info ioeventfds does not show it on the kernel's path"
e3=$(exits_but_console $L3) e4=$(exits_but_console $L4)
[ "$e3" != missing ] && [ "$e4" != missing ] && [ $(( e3 - r3 - e4 + r4 )) = $COUNT ] ||
	bad "device-write ioeventfd: exits $e4 (reads $r4) against $e3 (reads $r3) trapped: not $COUNT fewer"

# ---- 5. options the device cannot take: a bad command line, exit 2 ---------------
L5=/tmp/edu-refused.log
kickvm_run "x-msix-relocation=bar1 (edu has no MSI-X)" 60 $L5 run \
	-device vfio-pci,host=$edu,id=edu0,x-msix-relocation=bar1 $G
[ "$rc" = 2 ] || bad "x-msix-relocation=bar1: kickvm exited $rc, not 2"
grep -q "has no MSI-X" $L5 || bad "x-msix-relocation=bar1: the planner's reason is not printed"
kickvm_run "x-device-ioeventfd beyond BAR 0" 60 $L5 run \
	-device vfio-pci,host=$edu,id=edu0,x-device-ioeventfd=0:0x100000:4:1 $G
[ "$rc" = 2 ] || bad "x-device-ioeventfd beyond BAR 0: kickvm exited $rc, not 2"
grep -q "x-device-ioeventfd=0:0x100000:4:0x1 refused" $L5 ||
	bad "x-device-ioeventfd beyond BAR 0: the refusal is not named"
# ... and the device still works for the next user.
kickvm_run "test after the refusals" 60 $L5 run --stats \
	-device vfio-pci,host=$edu,id=edu0,x-msix-relocation=auto -a "mode=test" $G
guest_passed $L5 "test after the refusals, x-msix-relocation=auto" test

[ $status = 0 ] && echo "$GROUP: ok"
exit $status
