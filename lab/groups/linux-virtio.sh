# lab-skip: not written yet (issue 4, point 3: the hook is lab/groups/linux-virtio.sh)
# linux-virtio (issue 4, point 3): Debian's kernel under kickvm drives
# kickvm's virtio-blk and virtio-rng with its own drivers, with ioeventfd on
# and off.  The pieces are ready: lab/guest-init runs /tests/$NAME.sh when the
# guest's command line has kickvm.test=NAME, with virtio_pci, virtio_blk and
# virtio_rng loaded (put the script into $groot/tests in lab/build.sh), and
# kickvm's -device options are those of `kickvm run --help`.  To fill in:
#   for io in on off; do
#     kickvm run -m 512M --stats --ioeventfd $io --kernel /lab/nested/vmlinuz \
#       --initrd /lab/nested/initrd.cpio.gz -device virtio-blk,file=/tmp/disk.img \
#       -device virtio-rng -a "console=ttyS0 panic=-1 kickvm.test=virtio"
#   done   (and check the guest's PASS marker and the --stats lines)
echo "linux-virtio: not written yet (issue 4, point 3)"
exit 77
