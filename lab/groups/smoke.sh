# smoke: the lab's KVM (AMD SVM under TCG, nested paging) works, and kickvm
# runs on it: `kickvm info`, then the demo guest with --stats.
. /lab/lib.sh
K=/kickvm/bin/kickvm
fail() { echo "smoke: FAIL: $*"; exit 1; }

grep -q '^kvm_amd ' /proc/modules || fail "kvm_amd is not loaded"
[ -c /dev/kvm ] || fail "no /dev/kvm"
echo "smoke: kvm_amd loaded, npt=$(cat /sys/module/kvm_amd/parameters/npt)"
limited $K info || fail "kickvm info: $(status_words $?)"
limited $K run --stats /kickvm/guest/kickvm-demo.elf || fail "the demo guest: kickvm $(status_words $?)"
# A PVH guest linked by GNU ld with -Ttext (its ELF headers in a segment of
# their own at 0xff000) boots and exits 42; one whose segment lands on the
# boot tables is refused as a bad guest file (2).
limited $K run /kickvm/guest/kickvm-pvh-ld.elf; rc=$?
[ $rc = 42 ] || fail "the ld -Ttext PVH guest: kickvm $(status_words $rc), expected status 42"
limited $K run /kickvm/guest/kickvm-pvh-collide.elf; rc=$?
[ $rc = 2 ] || fail "a segment on the boot tables: kickvm $(status_words $rc), expected status 2"
echo "smoke: ok"
