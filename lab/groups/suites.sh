# suites (issue 4, point 4): kickvm's own unit and guest tests (cmocka) on the
# lab's ordinary KVM (AMD SVM with nested paging) rather than the PVM-based one
# they are usually run on.  lab/build.sh copies every test_* executable of the
# build (with its shared libraries, libcmocka included) to /kickvm/tests/unit
# and /kickvm/tests/kvm, and the guests to /kickvm/guest/.  Each test prints
# its own cmocka lines; 0 passes, 77 skips (counted and shown, not a pass),
# anything else fails.  tests/cli/test_cli.sh is left out: it is a bash script
# and the lab has only busybox sh.
# lab-timeout: 420
. /lab/lib.sh
G=/kickvm/guest
export KICKVM_SCRIPT_GUEST=$G/kickvm-script.elf
export KICKVM_VIRTIO_GUEST=$G/kickvm-virtio.elf
export TMPDIR=/tmp
for g in "$KICKVM_SCRIPT_GUEST" "$KICKVM_VIRTIO_GUEST"; do
	[ -f "$g" ] || { echo "suites: FAIL: no guest $g (lab/build.sh copies build/guest/*.elf)"; exit 1; }
done
pass=0 fail=0 skip=0 failed=
for t in /kickvm/tests/unit/test_* /kickvm/tests/kvm/test_*; do
	[ -x "$t" ] || continue
	name=${t#/kickvm/tests/}
	echo "suites: === $name ==="
	start=$(date +%s)
	limited "$t" 2>&1
	rc=$?
	secs=$(( $(date +%s) - start ))
	case $rc in
	0) echo "suites: ok   $name (${secs}s)"; pass=$((pass + 1));;
	77) echo "suites: SKIP $name (${secs}s)"; skip=$((skip + 1));;
	*) echo "suites: FAIL $name: exit $rc (${secs}s)"; fail=$((fail + 1)); failed="$failed $name";;
	esac
done
# The QMP client (python3's standard library only) against kickvm on this
# KVM: every command and event on a live machine (lab/build.sh adds python3).
if [ -x /usr/bin/python3 ] && [ -f /kickvm/tests/qmp/test_qmp.py ]; then
	echo "suites: === qmp/test_qmp.py kvm ==="
	start=$(date +%s)
	limited /usr/bin/python3 /kickvm/tests/qmp/test_qmp.py kvm /kickvm/bin/kickvm "$KICKVM_SCRIPT_GUEST" 2>&1
	rc=$?
	secs=$(( $(date +%s) - start ))
	case $rc in
	0) echo "suites: ok   qmp/test_qmp.py kvm (${secs}s)"; pass=$((pass + 1));;
	*) echo "suites: FAIL qmp/test_qmp.py kvm: exit $rc (${secs}s)"; fail=$((fail + 1))
	   failed="$failed qmp/test_qmp.py";;
	esac
else
	echo "suites: SKIP qmp/test_qmp.py kvm: no python3 in the lab"; skip=$((skip + 1))
fi
echo "suites: $pass passed, $fail failed, $skip skipped${failed:+; failed:$failed}"
[ $((pass + fail + skip)) -gt 0 ] || { echo "suites: FAIL: no tests in /kickvm/tests"; exit 1; }
[ $fail -eq 0 ] && [ $skip -eq 0 ]
