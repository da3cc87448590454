# lab-skip: not written yet (issue 4, point 4: the hook is lab/groups/suites.sh)
# suites (issue 4, point 4): kickvm's own unit and guest tests on the lab's
# ordinary KVM.  lab/build.sh already copies every test_* executable of the
# build (with its shared libraries, libcmocka included) to /kickvm/tests/
# (unit/, kvm/) and the guests to /kickvm/guest/.  To fill in: run each, and
# treat 77 as skip, e.g.
#   for t in /kickvm/tests/unit/test_* /kickvm/tests/kvm/test_*; do "$t" || ...; done
echo "suites: not written yet (issue 4, point 4); tests present:"
ls /kickvm/tests/*/ 2>/dev/null
exit 77
