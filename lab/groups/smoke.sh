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
echo "smoke: ok"
