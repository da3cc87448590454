# vfio-model: the VFIO device model on real vfio-pci.  The script guest places
# edu's BAR 0 through ECAM (slot 1), enables decode, and reads edu's ID and
# liveness registers through the mapped BAR (no exit) or, with x-no-mmap=on,
# trapped (counted).  nvme: BAR 0 mapped but for the MSI-X table/PBA pages.
# Guest RAM is DMA-mapped; the device is reset at start and exit, and a second
# run finds it usable.
# lab-qemu: -device edu -drive if=none,id=nvm,file=@LAB@/nvme.img,format=raw -device nvme,serial=kickvm0,drive=nvm
GROUP=vfio-model
. /lab/lib/vfio.sh  # K, fail, find_dev, bind_vfio
G=/kickvm/guest/kickvm-demo.elf
S=/kickvm/guest/kickvm-script.elf
# ECAM 0xe0000000, bus 0 slot 1: BAR 0 at 0xc0000000, memory + bus master on,
# then edu's ID (0x010000ed) and its liveness register (reads ~written).
EDU_SCRIPT="w4 0xe0008010 0xc0000000 1; w2 0xe0008004 6 1; r4 0xc0000000 1 0x010000ed; w4 0xc0000004 0x12345678 1; r4 0xc0000004 1 0xedcba987; exit 0"

edu=$(find_dev 0x1234 0x11e8) || fail "no edu device"
nvme=$(find_dev 0x1b36 0x0010) || fail "no nvme device"

# Not bound to vfio-pci: exit 1 with the fix named; a malformed BDF: exit 2.
$K run -device vfio-pci,host=$edu $G > /tmp/out.txt 2>&1; rc=$?
cat /tmp/out.txt
[ $rc = 1 ] || fail "unbound device: exit $rc, expected 1"
grep -q "vfio-pci" /tmp/out.txt || fail "unbound device: no message naming vfio-pci"
$K run -device vfio-pci,host=zz:00.0 $G; rc=$?
[ $rc = 2 ] || fail "bad BDF: exit $rc, expected 2"

bind_vfio $edu
bind_vfio $nvme
for run in 1 2; do
	echo "vfio-model: === edu, run $run ==="
	timeout 60 $K run -v --stats --info flatview -device vfio-pci,host=$edu,id=edu0 \
		-a "$EDU_SCRIPT" $S > /tmp/edu.txt 2>&1; rc=$?
	cat /tmp/edu.txt
	[ $rc = 0 ] || fail "edu run $run: exit $rc"
	grep -q "(prio 0, ramd): $edu BAR 0 mmaps\[0\]" /tmp/edu.txt || fail "edu: BAR 0 not mapped"
	grep -q "trapped BAR accesses: reads 0, writes 0" /tmp/edu.txt || fail "edu: BAR accesses trapped"
	grep -q "DMA: [1-9][0-9]* bytes of guest RAM mapped" /tmp/edu.txt || fail "edu: no DMA mapping"
done
echo "vfio-model: === edu, x-no-mmap=on ==="
timeout 60 $K run --stats --info flatview -device vfio-pci,host=$edu,x-no-mmap=on \
	-a "$EDU_SCRIPT" $S > /tmp/edu2.txt 2>&1; rc=$?
cat /tmp/edu2.txt
[ $rc = 0 ] || fail "edu x-no-mmap: exit $rc"
grep -q "ramd" /tmp/edu2.txt && fail "edu x-no-mmap: something is mapped"
grep -q "trapped BAR accesses: reads 2, writes 1" /tmp/edu2.txt || fail "edu x-no-mmap: not every access trapped"
# MSI: edu's capability (0x40, 64-bit, one vector) programmed and enabled
# through ECAM, then edu's raise-interrupt register written: the vector is
# on KVM's irqfd (the interrupt never passes through kickvm).
MSI_SCRIPT="w4 0xe0008010 0xc0000000 1; w2 0xe0008004 6 1; w4 0xe0008044 0xfee00000 1; w4 0xe0008048 0 1; w2 0xe000804c 0x31 1; w2 0xe0008042 1 1; w4 0xc0000060 1 1; exit 0"
echo "vfio-model: === edu, MSI ==="
timeout 60 $K run --stats -device vfio-pci,host=$edu -a "$MSI_SCRIPT" $S > /tmp/edu3.txt 2>&1; rc=$?
cat /tmp/edu3.txt
[ $rc = 0 ] || fail "edu MSI: exit $rc"
grep -q "vectors straight to KVM (irqfd) 1;" /tmp/edu3.txt || fail "edu MSI: vector not on KVM's irqfd"
grep -q "errors 0" /tmp/edu3.txt || fail "edu MSI: backend errors"
echo "vfio-model: === nvme ==="
timeout 60 $K run --stats -device vfio-pci,host=$nvme $G > /tmp/nvme.txt 2>&1; rc=$?
cat /tmp/nvme.txt
[ $rc = 0 ] || fail "nvme: exit $rc"
grep -q "BAR 0: memory 0x4000 bytes (not decoded), mapped (0 exits): +0x0-0x1fff" /tmp/nvme.txt ||
	fail "nvme: BAR 0 registers not mapped (or MSI-X pages mapped)"
# MSI-X on the real kernel: the capability found in nvme's config space, MSI-X
# enabled through ECAM, vector 0 programmed and unmasked in the (trapped,
# emulated) table: the device's vector 0 is then KVM's irqfd.
cfg=/sys/bus/pci/devices/$nvme/config
byte() { od -An -tu1 -j $1 -N1 $cfg | tr -d ' '; }
cap=$(byte 52); n=0
while [ "$cap" != 0 ] && [ "$(byte $cap)" != 17 ] && [ $n -lt 48 ]; do cap=$(byte $((cap + 1))); n=$((n + 1)); done
[ "$cap" != 0 ] && [ $n -lt 48 ] || fail "nvme: no MSI-X capability in config space"
ctrl=$(printf '0x%x' $((0xe0008000 + cap + 2)))
MSIX_SCRIPT="w4 0xe0008010 0xc0000000 1; w4 0xe0008014 0 1; w2 0xe0008004 6 1; w2 $ctrl 0x8000 1; w4 0xc0002000 0xfee00000 1; w4 0xc0002004 0 1; w4 0xc0002008 0x32 1; w4 0xc000200c 0 1; r4 0xc0000000 1; exit 0"
echo "vfio-model: === nvme, MSI-X (capability at $cap) ==="
timeout 60 $K run --stats --info flatview -device vfio-pci,host=$nvme -a "$MSIX_SCRIPT" $S > /tmp/nvme3.txt 2>&1; rc=$?
cat /tmp/nvme3.txt
[ $rc = 0 ] || fail "nvme MSI-X: exit $rc"
grep -q "MSI-X table/PBA accesses (emulated) 4; vectors straight to KVM (irqfd) 1;" /tmp/nvme3.txt ||
	fail "nvme MSI-X: vector 0 not on KVM's irqfd"
grep -q "trapped BAR accesses: reads 0, writes 0" /tmp/nvme3.txt || fail "nvme: register read trapped"
grep -q "(prio 1, i/o): msix-table" /tmp/nvme3.txt || fail "nvme: no emulated table in the flat view"
grep -q "errors 0" /tmp/nvme3.txt || fail "nvme MSI-X: backend errors"
# The QMP monitor with an assigned device: query-exit-stats (kickvm stat)
# and the monitor's device watch (every 200 ms) must know a vfio-pci device
# has no virtio state.  -S keeps the guest parked; SIGTERM ends kickvm.
echo "vfio-model: === edu under the QMP monitor ==="
rm -f /tmp/vfio-qmp.sock
timeout -s TERM 10 $K run -S -qmp unix:/tmp/vfio-qmp.sock -device vfio-pci,host=$edu,id=edu0 \
	-a "$EDU_SCRIPT" $S > /tmp/edu-qmp.txt 2>&1 &
kpid=$!
n=0
while [ ! -S /tmp/vfio-qmp.sock ] && [ $n -lt 20 ]; do sleep 1; n=$((n + 1)); done
$K stat --once --json /tmp/vfio-qmp.sock > /tmp/stat.txt 2>&1; src=$?
wait $kpid; rc=$?
cat /tmp/edu-qmp.txt /tmp/stat.txt
[ $src = 0 ] || fail "kickvm stat with vfio-pci: exit $src"
grep -q 'edu0' /tmp/stat.txt || fail "kickvm stat: no edu0"
grep -q 'vfio-pci' /tmp/stat.txt || fail "kickvm stat: edu0 is not a vfio-pci device"
[ $rc = 143 ] || fail "vfio-pci under the monitor: kickvm exit $rc, expected 143 (SIGTERM)"
echo "vfio-model: ok"
