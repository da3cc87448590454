#!/usr/bin/env bash
# The kickvm command as a user meets it: exit statuses, messages, and what
# --stats / --info / --trace / bench print.  Usage: test_cli.sh KICKVM DEMO.elf
set -u
kickvm=$1
demo=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0 skip=0

check() {  # check NAME EXPECTED_STATUS GREP_PATTERN -- command...
	local name=$1 want=$2 pattern=$3
	shift 4
	"$@" >"$tmp/out" 2>&1
	local got=$?
	if [ "$got" -ne "$want" ]; then
		echo "FAIL $name: exit status $got, expected $want"; sed 's/^/    /' "$tmp/out" | head -20
		fail=$((fail + 1)); return
	fi
	if [ -n "$pattern" ] && ! grep -q -E -- "$pattern" "$tmp/out"; then
		echo "FAIL $name: output lacks /$pattern/"; sed 's/^/    /' "$tmp/out" | head -20
		fail=$((fail + 1)); return
	fi
	echo "ok   $name"
	pass=$((pass + 1))
}

# Command-line errors: a clear message and status 2, KVM or not.
check "no command"            2 "usage: kickvm run"          -- "$kickvm"
check "unknown command"       2 "unknown command 'frob'"     -- "$kickvm" frob
check "bad option"            2 "Try 'kickvm run --help'"    -- "$kickvm" run --bogus "$demo"
check "bad memory size"       2 "bad memory size '12Q'"      -- "$kickvm" run -m 12Q "$demo"
check "bad cpu count"         2 "bad vCPU count '0'"         -- "$kickvm" run -c 0 "$demo"
check "too many cpus"         2 "bad vCPU count '99'"        -- "$kickvm" run -c 99 "$demo"
check "bad ioeventfd mode"    2 "on, off or auto, not 'maybe'" -- "$kickvm" run --ioeventfd=maybe "$demo"
check "bad trace pattern"     2 "no trace event matches 'nope\*'" -- "$kickvm" run --trace 'nope*' "$demo"
check "bad info"              2 "--info takes"               -- "$kickvm" run --info everything "$demo"
check "bad boot protocol"     2 "--boot takes auto, pvh, kickvm or elf64, not 'bios'" -- "$kickvm" run --boot bios "$demo"
check "bad device"            2 "unknown device 'virtio-gpu'" -- "$kickvm" run -device virtio-gpu "$demo"
check "blk without file"      2 "virtio-blk needs file=IMAGE" -- "$kickvm" run -device virtio-blk,readonly=on "$demo"
check "bad device option"     2 "virtio-blk: unknown option 'speed'" -- "$kickvm" run -device virtio-blk,file=x,speed=9 "$demo"
check "undeclared iothread"   2 "no iothread 'io9'"          -- "$kickvm" run -device virtio-rng,iothread=io9 "$demo"
check "vfio malformed BDF"    2 "malformed host 'zz:00.0'"   -- "$kickvm" run -device vfio-pci,host=zz:00.0 "$demo"
check "vfio without host"     2 "vfio-pci needs host=BDF"    -- "$kickvm" run -device vfio-pci,id=nic "$demo"
check "vfio bad relocation"   2 "bad value for 'x-msix-relocation'" -- "$kickvm" run -device vfio-pci,host=01:00.0,x-msix-relocation=bar6 "$demo"
check "vfio ioeventfd width"  2 "bad x-device-ioeventfd '0:0x4:3:1'" -- "$kickvm" run -device vfio-pci,host=01:00.0,x-device-ioeventfd=0:0x4:3:1 "$demo"
check "vfio ioeventfd BAR"    2 "bad x-device-ioeventfd '6:0x4:4:1'" -- "$kickvm" run -device vfio-pci,host=01:00.0,x-device-ioeventfd=6:0x4:4:1 "$demo"
check "vfio ioeventfd fields" 2 "want BAR:OFFSET:WIDTH:DATA" -- "$kickvm" run -device vfio-pci,host=01:00.0,x-device-ioeventfd=0:0x4:4 "$demo"
check "vfio ioeventfd data"   2 "DATA fitting WIDTH" -- "$kickvm" run -device vfio-pci,host=01:00.0,x-device-ioeventfd=0:0x4:1:0x100 "$demo"
check "vfio ioeventfd help"   0 "x-device-ioeventfd=BAR:OFFSET:WIDTH:DATA" -- "$kickvm" run --help
check "bad object"            2 "only 'iothread,id=NAME'"    -- "$kickvm" run -object memory-backend,id=m "$demo"
check "bad poll-max-ns"       2 "bad poll-max-ns 'lots'"     -- "$kickvm" run -object iothread,id=io0,poll-max-ns=lots "$demo"
check "bench blk bad poll-ns" 2 "bad --poll-ns '-1'"         -- "$kickvm" bench blk --poll-ns -1
check "two guests"            2 "one guest only"             -- "$kickvm" run "$demo" "$demo"
check "missing guest"         2 "cannot read guest '/nonexistent.elf'" -- "$kickvm" run /nonexistent.elf
check "bench unknown"         2 "unknown benchmark 'frob'"   -- "$kickvm" bench frob
check "bench bad writes"      2 "bad --writes '0'"           -- "$kickvm" bench doorbell --writes 0
check "bench blk bad aio"     2 "--aio takes auto, io_uring or threads" -- "$kickvm" bench blk --aio native
check "help"                  0 "--ioeventfd MODE"           -- "$kickvm" run --help
check "version"               0 "^kickvm [0-9]"              -- "$kickvm" --version
check "bad seccomp mode"      2 "--seccomp takes on, off or log, not 'trap'" -- "$kickvm" run --seccomp=trap "$demo"
check "help seccomp"          0 "--seccomp MODE"             -- "$kickvm" run --help

if ! [ -r /dev/kvm ] || ! [ -w /dev/kvm ]; then
	echo "skip the KVM part: /dev/kvm is missing or not accessible"
	skip=$((skip + 17))
else
	head -c 4096 /dev/urandom >"$tmp/random.bin"
	printf '\177ELF\002\001\001' >"$tmp/truncated.elf"
	check "not an ELF"        2 "not an ELF file"            -- "$kickvm" run "$tmp/random.bin"
	check "truncated ELF"     2 "random.bin|truncated|not an ELF|too short" -- "$kickvm" run "$tmp/truncated.elf"
	check "info"              0 "ioeventfd +yes"             -- "$kickvm" info
	# The demo: each doorbell proves its path.
	check "demo stats"        0 "testdev\+0x000 len 4 datamatch +signals 1100 \(kvm 1100, userspace fallback 0\)" \
		-- "$kickvm" run --stats "$demo"
	check "demo ioeventfd=off" 0 "testdev\+0x000 len 4 datamatch +signals 1100 \(kvm 0, userspace fallback 1100\)" \
		-- "$kickvm" run --ioeventfd=off --stats "$demo"
	check "demo via PVH"      0 "demo done"                  -- "$kickvm" run --boot pvh "$demo"
	check "missing disk image" 2 "cannot open the disk image"  -- "$kickvm" run -device virtio-blk,file=/nonexistent.img "$demo"
	check "demo 2 vCPUs"      0 "demo done"                  -- "$kickvm" run -c 2 "$demo"
	check "iothread no polling" 0 "iothread io0: busy-polls 0 ns before sleeping" \
		-- "$kickvm" run --stats -object iothread,id=io0,poll-max-ns=0 -device virtio-rng,iothread=io0 "$demo"
	check "trace ioeventfd"   0 "ioeventfd_handler testdev"  -- "$kickvm" run --trace 'ioeventfd_*' "$demo"
	check "info dumps"        0 "FlatView: AS \"memory\""    -- "$kickvm" run --info all "$demo"
	# Every thread class sandboxed (the default), the guest unaware; and log mode.
	truncate -s 1M "$tmp/disk.img"
	check "sandboxed threads" 0 "sandbox: main loop thread sandboxed \(on\)" \
		-- "$kickvm" run -v -v -object iothread,id=io0 -device virtio-rng,iothread=io0 \
		-device virtio-blk,file="$tmp/disk.img",aio=threads "$demo"
	check "seccomp=log"       0 "demo done"                  -- "$kickvm" run --seccomp=log -c 2 "$demo"
	# PVH guests linked by GNU ld with -Ttext (guest/pvh/pvh.S): the header
	# segment below 1 MiB loads; one on the boot tables, or an entry that
	# its mode cannot reach, is a bad guest file (status 2, a clear reason).
	guests=$(dirname "$demo")
	check "PVH ld -Ttext guest" 42 ""                        -- "$kickvm" run "$guests/kickvm-pvh-ld.elf"
	check "segment on boot tables" 2 "collides with kickvm's boot tables" \
		-- "$kickvm" run "$guests/kickvm-pvh-collide.elf"
	check "PVH entry above 4G" 2 "PVH entry above 4 GiB"     -- "$kickvm" run -m 3136M "$guests/kickvm-pvh-high.elf"
	check "KickVM entry above 4G" 2 "KickVM entry outside the boot identity map" \
		-- "$kickvm" run -m 3136M "$guests/kickvm-kickvm-high.elf"
	check "bench json"        0 '^\{"bench":"doorbell","writes":50,"paths":\[\{"path":"trapped-pio","cpl":0' \
		-- "$kickvm" bench doorbell --writes 50 --json
	check "bench blk json"    0 '^\{"bench":"blk","reqs":200,"cache":"writeback","aio":"(io_uring|threads)\+inline","guest":"polled","runs":\[\{"op":"randread","qd":1,"ioeventfd":"on"' \
		-- "$kickvm" bench blk --qd 1 --reqs 200 --json
fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
