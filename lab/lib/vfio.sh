# Shared by the lab's device-assignment groups (busybox sh), sourced as
# /lab/lib/vfio.sh after setting GROUP to the group's name: finding QEMU's
# devices, binding them to vfio-pci, running kickvm with a timeout that says
# which step hung, and reading what kickvm's --stats says per device.
K=/kickvm/bin/kickvm

fail() { echo "$GROUP: FAIL: $*"; exit 1; }

find_dev() {  # find_dev VENDOR DEVICE -> BDF
	for d in /sys/bus/pci/devices/*; do
		if [ "$(cat $d/vendor)" = "$1" ] && [ "$(cat $d/device)" = "$2" ]; then
			basename $d
			return 0
		fi
	done
	return 1
}

bind_vfio() {  # bind_vfio BDF: hand the function to vfio-pci
	echo vfio-pci > /sys/bus/pci/devices/$1/driver_override
	[ -e /sys/bus/pci/devices/$1/driver ] && echo $1 > /sys/bus/pci/devices/$1/driver/unbind
	echo $1 > /sys/bus/pci/drivers_probe
	[ "$(basename $(readlink /sys/bus/pci/devices/$1/driver))" = vfio-pci ] ||
		fail "$1 did not bind to vfio-pci"
	echo "$GROUP: $1 ($(cat /sys/bus/pci/devices/$1/vendor):$(cat /sys/bus/pci/devices/$1/device)) bound to vfio-pci," \
	     "IOMMU group $(basename $(readlink /sys/bus/pci/devices/$1/iommu_group))"
}

# kickvm_run STEP SECONDS LOG KICKVM-ARGS...: `kickvm KICKVM-ARGS` under a
# limit of SECONDS (SIGTERM, on which kickvm stops the guest and prints its
# state and --stats; SIGKILL 10 s later), its stdout and stderr in LOG and on
# the console.  Sets $rc (the exit status) and $secs.  A run stopped by the
# limit, or refused because kickvm has no vfio-pci device, fails the group
# here, naming the step.
kickvm_run() {
	step=$1 limit=$2 log=$3
	shift 3
	echo "$GROUP: === $step: kickvm $* ==="
	start=$(date +%s)
	{ timeout -s TERM -k 10 $limit $K "$@"; echo "kickvm-exit=$?" > $log.rc; } 2>&1 | tee $log
	rc=$(sed -n 's/kickvm-exit=//p' $log.rc)
	secs=$(( $(date +%s) - start ))
	case $rc in
	143|137|124) fail "$step: kickvm hung: stopped after ${secs}s by the ${limit}s limit (exit $rc)";;
	esac
	if [ "$rc" = 2 ] && grep -q "unknown device 'vfio-pci'" $log; then
		fail "$step: kickvm does not support -device vfio-pci yet (it exits 2: unknown device)"
	fi
	echo "$GROUP: $step: kickvm exited $rc after ${secs}s"
}

# report LOG NAME: the value of the guest's last "REPORT NAME=V" line.
report() {
	tr -d '\r' < "$1" | sed -n "s/^REPORT $2=\([0-9]*\).*/\1/p" | tail -1
}

# --- kickvm --stats, per assigned device ---------------------------------------
# The block of device ID is its line " ID (vfio-pci BDF):" and the indented
# lines under it.  Each F_* is a sed pattern whose \(...\) is the number: what
# kickvm prints (issue 8, point 10: accesses by path); change them here and
# in kickvm (src/vfio/) together.
F_TRAPPED_READS='trapped BAR accesses: reads \([0-9][0-9]*\)'           # forwarded with pread
F_TRAPPED_WRITES='trapped BAR accesses: reads [0-9]*, writes \([0-9][0-9]*\)'  # ... pwrite
F_MSIX_TABLE='MSI-X table/PBA accesses (emulated) \([0-9][0-9]*\)'     # emulated by kickvm
F_IRQS_KICKVM='interrupts through kickvm ([^)]*) \([0-9][0-9]*\)'      # not straight to KVM
F_DMA_BYTES='DMA: \([0-9][0-9]*\) bytes of guest RAM mapped'

# stat_name PATTERN: the pattern as the line reads, numbers shown as N.
stat_name() {
	echo "$1" | sed 's/\\([^)]*\\)/N/g; s/\[0-9\]\*/N/g'
}

# dev_stat LOG ID PATTERN: the number PATTERN picks from device ID's block;
# "missing" when the block or the pattern is not there.
dev_stat() {
	v=$(tr -d '\r' < "$1" | awk -v dev=" $2 (" '/^ [^ ]/ { in_dev = (index($0, dev) == 1) } in_dev' |
		sed -n "s|.*$3.*|\1|p" | head -1)
	echo "${v:-missing}"
}

# exits_but_console LOG: MMIO exits to kickvm (all vCPUs) less the characters
# the guest wrote to the console (from CPL3, one MMIO exit each), from the
# run's --stats; "missing" without them.
exits_but_console() {
	tr -d '\r' < "$1" | awk '
		/^  cpu[0-9]+: runs [0-9]+, mmio [0-9]+,/ { e += $5 + 0; have_e = 1 }
		/^ console characters: [0-9]+/ { c = $3 + 0; have_c = 1 }
		END { if (have_e && have_c) print e - c; else print "missing" }'
}
