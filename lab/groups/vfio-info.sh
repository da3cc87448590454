# vfio-info: bind QEMU's edu (1234:11e8) and nvme (1b36:0010) to vfio-pci and
# read them with `kickvm vfio-info`: regions, capabilities, IRQs.  The nvme's
# BAR0 holds its MSI-X table: the kernel must say MSIX_MAPPABLE there.
# lab-qemu: -device edu -drive if=none,id=nvm,file=@LAB@/nvme.img,format=raw -device nvme,serial=kickvm0,drive=nvm
GROUP=vfio-info
. /lab/lib/vfio.sh

edu=$(find_dev 0x1234 0x11e8) || fail "no edu device (QEMU -device edu)"
nvme=$(find_dev 0x1b36 0x0010) || fail "no nvme device (QEMU -device nvme)"

# Before binding: a clear message, exit 1; a malformed BDF: exit 2.
$K vfio-info $edu; rc=$?
[ $rc = 1 ] || fail "unbound device: exit $rc, expected 1"
$K vfio-info 0000:zz:00.0; rc=$?
[ $rc = 2 ] || fail "bad BDF: exit $rc, expected 2"

bind_vfio $edu
bind_vfio $nvme
echo "vfio-info: === edu ($edu) ==="
$K vfio-info $edu > /tmp/edu.txt; rc=$?
cat /tmp/edu.txt
[ $rc = 0 ] || fail "edu: exit $rc"
grep -q "BAR0 .*size 0x100000" /tmp/edu.txt || fail "edu: BAR0 is not 1 MiB"
echo "vfio-info: === nvme ($nvme) ==="
$K vfio-info $nvme > /tmp/nvme.txt; rc=$?
cat /tmp/nvme.txt
[ $rc = 0 ] || fail "nvme: exit $rc"
grep -q "BAR0 .*msix-mappable" /tmp/nvme.txt || fail "nvme: BAR0 does not report MSIX_MAPPABLE"
grep -q "MSI-X .*count [1-9]" /tmp/nvme.txt || fail "nvme: no MSI-X vectors"
echo "vfio-info: ok"
