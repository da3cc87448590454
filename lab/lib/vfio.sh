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
# timeout, its stdout and stderr in LOG and on the console.  Sets $rc (the
# exit status) and $secs.  A run killed by the timeout, or one refused
# because kickvm has no vfio-pci device, fails the group here, naming the step.
kickvm_run() {
	step=$1 limit=$2 log=$3
	shift 3
	echo "$GROUP: === $step: kickvm $* ==="
	start=$(date +%s)
	{ timeout $limit $K "$@"; echo "kickvm-exit=$?" > $log.rc; } 2>&1 | tee $log
	rc=$(sed -n 's/kickvm-exit=//p' $log.rc)
	secs=$(( $(date +%s) - start ))
	# busybox timeout: the killed kickvm's status (143 after SIGTERM).
	if [ $secs -ge $limit ] || [ "$rc" = 124 ] || [ "$rc" = 143 ] || [ "$rc" = 137 ]; then
		fail "$step: kickvm hung: killed after ${secs}s (limit ${limit}s, exit $rc)"
	fi
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
# The block of device ID is its line " ID (vfio-pci ...)" and the indented
# lines under it.  The field names are what kickvm prints (issue 8, point 10:
# accesses by path); change them here and in kickvm together.
F_TRAPPED_READS="trapped reads"           # BAR accesses forwarded with pread
F_TRAPPED_WRITES="trapped writes"         # ... and with pwrite (never the MSI-X table)
F_MSIX_TABLE="msi-x table accesses"       # MSI-X table and PBA, emulated by kickvm
F_IRQS="interrupts"                       # MSI/MSI-X messages through irqfds

# dev_stat LOG ID FIELD: FIELD's numbers ("FIELD N") summed over the block
# of device ID; "missing" when the block or the field is not there.
dev_stat() {
	tr -d '\r' < "$1" | awk -v dev=" $2 (" -v f="$3 " '
		/^ [^ ]/ { in_dev = (index($0, dev) == 1) }
		in_dev {
			s = $0
			while ((i = index(s, f)) > 0) {
				s = substr(s, i + length(f)); n += s + 0; found = 1
			}
		}
		END { if (found) print n + 0; else print "missing" }'
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
