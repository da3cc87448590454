#!/usr/bin/env bash
# Build the lab: a Debian kernel and an initramfs with kickvm inside, for
# lab/run.sh to boot under QEMU's software emulation (TCG).  Debian packages
# only: the generic kernel image and busybox-static are fetched with
# `apt-get download` and unpacked with `dpkg-deb -x` (never installed).
#
#   lab/build.sh [BUILD_DIR]     (default: build, a meson build of kickvm)
#
# Downloads are cached in BUILD_DIR/lab-cache; the results go to
# BUILD_DIR/lab: vmlinuz, lab.cpio.gz.  Exits 77 (meson's "skip") with the
# reason when a piece cannot be had (no network, no apt).
#
# Environment: LAB_KERNEL_PKG=linux-image-<ver>-amd64 to pin the kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
lab_src=$PWD/lab
build=$(realpath "${1:-build}")
cache=$build/lab-cache
out=$build/lab
skip() { echo "lab: SKIP: $*" >&2; exit 77; }
die() { echo "lab: error: $*" >&2; exit 1; }

[ -x "$build/src/cli/kickvm" ] || skip "no kickvm in $build (build it first: scripts/setup.sh $build)"
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || skip "needs apt-get and dpkg-deb (Debian)"
mkdir -p "$cache" "$out"

# ---- the packages -------------------------------------------------------------
kernel_pkg=${LAB_KERNEL_PKG:-}
if [ -z "$kernel_pkg" ]; then
	# The generic (not -cloud) kernel: the cloud one lacks AMD_IOMMU and
	# builds NVMe in.  linux-image-amd64 names the current one.
	resolve() { apt-cache depends linux-image-amd64 2>/dev/null |
		    awk '/Depends: linux-image-[0-9]/ { print $2; exit }'; }
	kernel_pkg=$(resolve || true)
	if [ -z "$kernel_pkg" ]; then
		apt-get update -qq >/dev/null 2>&1 || true
		kernel_pkg=$(resolve || true)
	fi
	[ -n "$kernel_pkg" ] || skip "cannot resolve linux-image-amd64 (no apt lists, no network?)"
fi
case $kernel_pkg in *-cloud-amd64) die "$kernel_pkg: use the generic kernel, not -cloud";; esac
kver=${kernel_pkg#linux-image-}

fetch() {  # fetch PACKAGE: the .deb in the cache, downloaded once
	local deb
	deb=$(ls "$cache/$1"_*.deb 2>/dev/null | head -1 || true)
	if [ -z "$deb" ]; then
		echo "lab: downloading $1" >&2
		# apt's sandbox user may not write into the build tree: silence its warning.
		(cd "$cache" && apt-get download "$1" >/dev/null 2>&1) ||
			skip "cannot download $1 (no network?)"
		deb=$(ls "$cache/$1"_*.deb | head -1)
	fi
	echo "$deb"
}
unpack() {  # unpack DEB DIR, once
	[ -d "$2" ] && return 0
	dpkg-deb -x "$1" "$2.tmp" && mv "$2.tmp" "$2"
}
unpack "$(fetch "$kernel_pkg")" "$cache/$kernel_pkg"
unpack "$(fetch busybox-static)" "$cache/busybox-static"
kroot=$cache/$kernel_pkg
bb=$cache/busybox-static/bin/busybox
moddir=$kroot/lib/modules/$kver
[ -f "$kroot/boot/vmlinuz-$kver" ] && [ -d "$moddir" ] || die "$kernel_pkg: no vmlinuz or modules inside"
cp "$kroot/boot/vmlinuz-$kver" "$out/vmlinuz"

# ---- modules ----------------------------------------------------------------------
# No depmod output ships in the package: read depends= from each module's
# .modinfo and load in dependency order.  Modules may be .ko or .ko.xz/.zst.
find_module() {
	local n=${1//-/_} f
	while IFS= read -r f; do
		local b=${f##*/}; b=${b%%.ko*}
		[ "${b//-/_}" = "$n" ] && { echo "$f"; return 0; }
	done < <(find "$moddir/kernel" -name '*.ko*')
	return 1
}
ko_cat() {
	case $1 in
	*.ko.xz) xz -dc "$1";;
	*.ko.zst) zstd -qdc "$1";;
	*.ko.gz) gzip -dc "$1";;
	*) cat "$1";;
	esac
}
declare -A seen
add_module() {  # add_module NAME DEST_DIR ORDER_FILE
	local name=${1//-/_} f deps d
	[ -n "${seen[$3:$name]:-}" ] && return 0
	seen[$3:$name]=1
	f=$(find_module "$name") || die "module $1 not in $kernel_pkg"
	deps=$(ko_cat "$f" | tr '\0' '\n' | sed -n 's/^depends=//p' | head -1 | tr ',' ' ')
	for d in $deps; do add_module "$d" "$2" "$3"; done
	ko_cat "$f" > "$2/$name.ko"
	echo "$name" >> "$3"
}

# A staging tree per initramfs; busybox applets become symlinks.
new_root() {
	rm -rf "$1"
	mkdir -p "$1"/{bin,sbin,dev,proc,sys,tmp,lib/modules,etc}
	cp "$bb" "$1/bin/busybox"
	for a in $("$bb" --list); do
		[ "$a" = busybox ] || ln -sf busybox "$1/bin/$a"
	done
	: > "$1/lib/modules/order"
}
mkcpio() {  # mkcpio ROOT OUT.cpio.gz
	(cd "$1" && find . -mindepth 1 | LC_ALL=C sort | "$bb" cpio -o -H newc 2>/dev/null) |
		gzip -6 > "$2.tmp"
	mv "$2.tmp" "$2"
}

# Copy an executable and the shared libraries it loads, at their paths.
copy_with_libs() {  # copy_with_libs ROOT SRC DEST
	local lib
	mkdir -p "$1/$(dirname "$3")"
	cp "$2" "$1/$3"
	for lib in $(ldd "$2" 2>/dev/null | grep -o '/[^ ]*' || true); do
		[ -e "$1$lib" ] && continue
		mkdir -p "$1$(dirname "$lib")"
		cp -L "$lib" "$1$lib"
	done
}

# ---- the nested guest's initramfs (what kickvm boots inside the lab) -------------
groot=$out/guest-root
new_root "$groot"
for m in virtio_pci virtio_blk virtio_rng; do
	add_module "$m" "$groot/lib/modules" "$groot/lib/modules/order"
done
# nvme and what it needs: loaded by the nvme test itself (nvme.order), which
# watches a load that hangs instead of /init blocking before any test runs.
add_module nvme "$groot/lib/modules" "$groot/lib/modules/nvme.order"
install -m 755 "$lab_src/guest-init" "$groot/init"
# The nested guest's tests: kickvm.test=NAME runs /tests/NAME.sh.
mkdir -p "$groot/tests"
install -m 755 "$lab_src"/guest-tests/*.sh "$groot/tests/"
mkcpio "$groot" "$out/guest.cpio.gz"

# ---- the lab's initramfs -------------------------------------------------------------
root=$out/root
new_root "$root"
for m in irqbypass kvm ccp kvm_amd vfio vfio_iommu_type1 vfio_virqfd vfio_pci_core vfio_pci; do
	add_module "$m" "$root/lib/modules" "$root/lib/modules/order"
done
install -m 755 "$lab_src/init" "$root/init"
mkdir -p "$root/lab/groups" "$root/lab/nested"
install -m 755 "$lab_src"/groups/*.sh "$root/lab/groups/"
install -m 644 "$lab_src/lib.sh" "$root/lab/lib.sh"
mkdir -p "$root/lab/lib"
install -m 644 "$lab_src"/lib/*.sh "$root/lab/lib/"
copy_with_libs "$root" "$build/src/cli/kickvm" /kickvm/bin/kickvm
# The unwinder glibc's backtrace() loads: the sandbox prints where a
# forbidden call came from with it (ldd does not list it).
gcc_s=$(ldconfig -p 2>/dev/null | grep -o '/[^ ]*libgcc_s.so.1$' | head -1)
if [ -n "$gcc_s" ] && [ ! -e "$root$gcc_s" ]; then
	mkdir -p "$root$(dirname "$gcc_s")"
	cp -L "$gcc_s" "$root$gcc_s"
fi
mkdir -p "$root/kickvm/guest"
cp "$build"/guest/*.elf "$root/kickvm/guest/" 2>/dev/null || true
# python3 (Debian's, unpacked like the kernel) for the QMP client test
# (tests/qmp/test_qmp.py kvm): it drives kickvm over its socket.  Optional:
# without it the suites group says the client test did not run.
py_root=$cache/python3
if [ ! -d "$py_root" ]; then
	py_ok=1
	for p in python3.11-minimal libpython3.11-minimal libpython3.11-stdlib; do
		deb=$(ls "$cache/$p"_*.deb 2>/dev/null | head -1 || true)
		[ -n "$deb" ] || { (cd "$cache" && apt-get download "$p" >/dev/null 2>&1) &&
			deb=$(ls "$cache/$p"_*.deb | head -1); } || { py_ok=0; break; }
		dpkg-deb -x "$deb" "$py_root.tmp" || py_ok=0
	done
	if [ $py_ok = 1 ]; then
		rm -rf "$py_root.tmp/usr/lib/python3.11/test" "$py_root.tmp/usr/share"
		mv "$py_root.tmp" "$py_root"
	else
		rm -rf "$py_root.tmp"
		echo "lab: no python3.11 packages: the QMP client test will not run in the lab" >&2
	fi
fi
if [ -x "$py_root/usr/bin/python3.11" ]; then
	cp -a "$py_root/usr" "$root/"
	ln -sf python3.11 "$root/usr/bin/python3"
	for lib in $(ldd "$py_root/usr/bin/python3.11" 2>/dev/null | grep -o '/[^ ]*' || true); do
		[ -e "$root$lib" ] && continue
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
	mkdir -p "$root/kickvm/tests/qmp"
	cp tests/qmp/test_qmp.py "$root/kickvm/tests/qmp/"
fi
# The test executables (unit and guest tests), for the suites group.
if [ -d "$build/tests" ]; then
	while IFS= read -r t; do
		copy_with_libs "$root" "$t" "/kickvm/tests/${t#"$build"/tests/}"
	done < <(find "$build/tests" -type f -perm -u+x -name 'test_*' ! -name '*.p' ! -name '*.sh')
	cp -r "$build/tests/cli" "$root/kickvm/tests/" 2>/dev/null || true
fi
# What the nested guest boots: the same kernel as a bzImage, and as the vmlinux
# inside it (for the PVH path), with the tiny initramfs above.
cp "$out/vmlinuz" "$root/lab/nested/vmlinuz"
cp "$out/guest.cpio.gz" "$root/lab/nested/initrd.cpio.gz"
if [ ! -f "$cache/vmlinux-$kver" ]; then
	# The payload's place is in the setup header: payload_offset and
	# payload_length (0x248), counted from the end of the setup sectors.
	sects=$(od -An -tu1 -j$((0x1f1)) -N1 "$out/vmlinuz")
	[ "$sects" -eq 0 ] && sects=4
	read -r off len < <(od -An -tu4 -j$((0x248)) -N8 "$out/vmlinuz")
	dd if="$out/vmlinuz" of="$cache/vmlinux-$kver.payload" bs=1M status=none \
		iflag=skip_bytes,count_bytes skip=$(( (sects + 1) * 512 + off )) count="$len"
	# Debian compresses the kernel with xz; the payload carries its size after
	# the stream, hence --single-stream.
	xz -dc --single-stream "$cache/vmlinux-$kver.payload" > "$cache/vmlinux-$kver.tmp" ||
		die "cannot unpack the vmlinux inside $kernel_pkg"
	mv "$cache/vmlinux-$kver.tmp" "$cache/vmlinux-$kver"
fi
cp "$cache/vmlinux-$kver" "$root/lab/nested/vmlinux"
echo "$kver" > "$root/lab/kernel-version"
mkcpio "$root" "$out/lab.cpio.gz"
echo "lab: built $out (kernel $kver, initramfs $(du -h "$out/lab.cpio.gz" | cut -f1))" >&2
