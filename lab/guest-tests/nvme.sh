# The nested guest's half of the vfio-nvme group (lab/groups/vfio-nvme.sh):
# Linux's own nvme driver drives QEMU's nvme (1b36:0010), assigned to kickvm
# through vfio-pci.  On the command line: kickvm.nvme=MODE (the
# x-msix-relocation in use: off, barN or auto; it seeds this run's pattern)
# and kickvm.nvme.prev=MODE (the run before, whose pattern must still be on
# the namespace; "none" for the first).  Checks: the driver binds with MSI-X
# in the place MODE says, several queues get vectors and I/O queue
# interrupts arrive, a pattern written with O_DIRECT reads back, a flush
# goes through, and after rmmod/insmod nvme the data is still there.
fail() {
	echo "nvme-test: FAIL: $*"
	echo "nvme-test: the nvme queues' interrupts and the kernel's last lines:"
	grep nvme /proc/interrupts | sed 's/^/nvme-test:   /'
	dmesg | tail -15 | sed 's/^/nvme-test:   /'
	exit 1
}
BS=4096
N=64                          # 256 KiB at the start ...
TAIL=16                       # ... and 64 KiB at the end of the namespace

mode= prev=none
for arg in $(cat /proc/cmdline); do
	case $arg in
	kickvm.nvme=*) mode=${arg#kickvm.nvme=};;
	kickvm.nvme.prev=*) prev=${arg#kickvm.nvme.prev=};;
	esac
done
[ -n "$mode" ] || fail "no kickvm.nvme=MODE on the command line"

# The same lines, made the same way, for every run with the same seed; each
# line names its place, so misplaced blocks never compare equal.
pattern() {  # pattern SEED BYTES
	awk -v s="$1" -v n=$2 'BEGIN { for (i = 0; i * 20 < n; i++) printf "%s %010d kickvm-nvme\n", s, i }' |
		head -c $2
}

# watched SECONDS WHAT CMD...: CMD in the background; a CMD still running
# after SECONDS (a driver waiting on an interrupt that never comes) fails the
# test with what the kernel says, instead of hanging it.
watched() {
	limit=$1 what=$2
	shift 2
	"$@" &
	pid=$!
	for i in $(seq $((limit * 10))); do
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
	done
	kill -0 $pid 2>/dev/null && fail "$what: still running after ${limit}s"
	wait $pid || fail "$what: exit $?"
}
load_nvme() {  # the modules lab/build.sh listed in nvme.order, nvme last
	for m in $(cat /lib/modules/nvme.order); do
		grep -q "^$m " /proc/modules || watched 60 "insmod $m" insmod /lib/modules/$m.ko
	done
}
load_nvme
wait_disk() {  # wait_disk WHEN: the namespace's block device appears
	for i in $(seq 100); do
		[ -b /dev/nvme0n1 ] && return 0
		sleep 0.1
	done
	fail "no /dev/nvme0n1 $1"
}
wait_disk "after loading nvme"

# ---- the function, its MSI-X capability, its vectors -------------------------------
bdf=
for d in /sys/bus/pci/devices/*; do
	[ "$(cat $d/vendor)" = 0x1b36 ] && [ "$(cat $d/device)" = 0x0010 ] && bdf=$(basename $d)
done
[ -n "$bdf" ] || fail "no 1b36:0010 function"
dev=/sys/bus/pci/devices/$bdf
[ "$(basename $(readlink $dev/driver))" = nvme ] || fail "$bdf is not bound to nvme"
cfg8() { od -An -tu1 -j$(($1)) -N1 $dev/config | tr -d ' '; }     # cfg8 OFFSET
cfg32() { od -An -tu4 -j$(($1)) -N4 $dev/config | tr -d ' '; }    # cfg32 OFFSET
cap=$(cfg8 0x34) msix=
n=0
while [ "$cap" -ge 64 ] && [ $n -lt 48 ]; do
	[ "$(cfg8 $cap)" = 17 ] && msix=$cap
	cap=$(( $(cfg8 $((cap + 1))) & 0xfc )); n=$((n + 1))
done
[ -n "$msix" ] || fail "no MSI-X capability in config space"
ctrl=$(( $(cfg8 $((msix + 2))) | $(cfg8 $((msix + 3))) << 8 ))
table=$(cfg32 $((msix + 4))) pba=$(cfg32 $((msix + 8)))
echo "nvme-test: $bdf MSI-X at 0x$(printf %x $msix): $(( (ctrl & 0x7ff) + 1 )) vectors," \
     "enabled $(( ctrl >> 15 & 1 )), table BAR$(( table & 7 ))+0x$(printf %x $(( table & ~7 )))," \
     "PBA BAR$(( pba & 7 ))+0x$(printf %x $(( pba & ~7 )))"
echo "nvme-test: resources:"; head -6 $dev/resource | sed 's/^/nvme-test:   /'
[ $(( ctrl >> 15 & 1 )) = 1 ] || fail "MSI-X is not enabled"
case $mode in
off) [ $(( table & 7 )) = 0 ] && [ $(( table & ~7 )) = $((0x2000)) ] ||
	fail "x-msix-relocation=off: the table is not at BAR0+0x2000 (the device's own place)";;
bar[0-5]) [ $(( table & 7 )) = ${mode#bar} ] && [ $(( pba & 7 )) = ${mode#bar} ] ||
	fail "x-msix-relocation=$mode: table and PBA are not in BAR${mode#bar}";;
auto) [ $(( table & 7 )) != 0 ] || [ $(( table & ~7 )) != $((0x2000)) ] ||
	fail "x-msix-relocation=auto: the table is still at BAR0+0x2000 (not relocated)";;
esac
bar=$(( table & 7 ))
[ "$(sed -n "$((bar + 1))p" $dev/resource | awk '{ print $1 }')" != 0x0000000000000000 ] ||
	fail "the table's BAR$bar has no address"
vectors=$(grep -l msix $dev/msi_irqs/* 2>/dev/null | wc -l)
queues=$(grep -c 'nvme0q[0-9]' /proc/interrupts)
echo "nvme-test: $vectors MSI-X vectors in use, $queues nvme queues in /proc/interrupts:"
grep 'nvme0q' /proc/interrupts | sed 's/^/nvme-test:   /'
[ "$vectors" -ge 2 ] || fail "fewer than 2 MSI-X vectors in use ($vectors)"
[ "$queues" -ge 2 ] || fail "fewer than 2 queues with interrupts ($queues): want the admin queue and I/O queues"

# ---- data ------------------------------------------------------------------------------
size=$(blockdev --getsize64 /dev/nvme0n1)
echo "nvme-test: /dev/nvme0n1 $size bytes, cache $(cat /sys/block/nvme0n1/queue/write_cache 2>/dev/null)"
[ "$size" -ge $(( (N + TAIL) * BS )) ] || fail "namespace of $size bytes is too small"
last=$(( size / BS - TAIL ))
check() {  # check SEED WHAT: the start and the end of the namespace hold SEED's pattern
	pattern $1 $((N * BS)) > /tmp/want.bin
	watched 60 "$2: O_DIRECT read" dd if=/dev/nvme0n1 of=/tmp/got.bin bs=$BS count=$N iflag=direct 2>/dev/null
	cmp /tmp/want.bin /tmp/got.bin || fail "$2: the start differs from pattern '$1'"
	head -c $((TAIL * BS)) /tmp/want.bin > /tmp/want-tail.bin
	watched 60 "$2: O_DIRECT read at the end" dd if=/dev/nvme0n1 of=/tmp/got.bin bs=$BS count=$TAIL skip=$last iflag=direct 2>/dev/null
	cmp /tmp/want-tail.bin /tmp/got.bin || fail "$2: the end differs from pattern '$1'"
}
if [ "$prev" != none ]; then
	check $prev "the previous run's data"
	echo "nvme-test: the previous run's pattern ($prev) is still there"
fi
io_irqs() {  # interrupts on the I/O queues (not q0, the admin queue) so far
	grep 'nvme0q[1-9]' /proc/interrupts | awk '{ for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i } END { print n + 0 }'
}
before=$(io_irqs)
pattern $mode $((N * BS)) > /tmp/pattern.bin
watched 60 "O_DIRECT write" dd if=/tmp/pattern.bin of=/dev/nvme0n1 bs=$BS count=$N oflag=direct conv=notrunc 2>/dev/null
watched 60 "O_DIRECT write at the end" dd if=/tmp/pattern.bin of=/dev/nvme0n1 bs=$BS count=$TAIL seek=$last oflag=direct conv=notrunc 2>/dev/null
check $mode "read back"
after=$(io_irqs)
echo "nvme-test: wrote and read back $(( (N + TAIL) * BS )) bytes; I/O queue interrupts $before -> $after"
[ "$after" -gt "$before" ] || fail "no interrupt on an I/O queue during the I/O"
sync
watched 60 "blockdev --flushbufs" blockdev --flushbufs /dev/nvme0n1
echo "nvme-test: flushed"

# ---- unload and load the driver: it resets the controller and sets up again -------------
watched 60 "rmmod nvme" rmmod nvme
[ ! -b /dev/nvme0n1 ] || { sleep 1; [ ! -b /dev/nvme0n1 ] || fail "/dev/nvme0n1 still there after rmmod"; }
load_nvme
wait_disk "after reloading nvme"
check $mode "after reloading nvme"
[ "$(grep -c 'nvme0q[0-9]' /proc/interrupts)" -ge 2 ] || fail "after reloading: fewer than 2 queues with interrupts"
echo "nvme-test: nvme unloaded and reloaded, data still there"
echo "KICKVM-NVME: PASS $mode"
