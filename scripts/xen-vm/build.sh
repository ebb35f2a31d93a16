#!/bin/bash
# build.sh OUT_DIR XENTINEL_DEB XENTINEL_GUEST_DEB
#
# Assembles, from Debian packages only (see install-deps.sh), what boot.sh needs to run a real
# Xen 4.17 + Linux PV dom0 under QEMU:
#   OUT_DIR/xen            the hypervisor, gunzipped (QEMU's multiboot loader wants the ELF)
#   OUT_DIR/vmlinuz        Debian's kernel: dom0, and the PV and PVH domUs
#   OUT_DIR/dom0.cpio.gz   dom0 initramfs: busybox, Xen tools + libs, kernel modules, the
#                          xentinel package, dom0-init.sh as /init, the domU configs and the domU
#                          initramfs
#   OUT_DIR/domU.cpio.gz   domU initramfs: busybox, xenstore client, the xentinel-guest package,
#                          guest-init.sh as /init
# The packages are installed as dpkg would lay them out (`dpkg-deb -x`: /usr/bin/xentinel,
# /etc/xentinel/xentinel.yml, /etc/default/*, the units), less /usr/share/doc (RAM); the
# initramfs has no dpkg database and no systemd, so the init scripts start what the units would.
set -euo pipefail

usage() { echo "usage: $0 OUT_DIR XENTINEL_DEB XENTINEL_GUEST_DEB" >&2; exit 2; }
[ $# -eq 3 ] || usage
OUT=$1
DEB=$2
GUEST_DEB=$3
HERE=$(cd "$(dirname "$0")" && pwd)
XENLIB=/usr/lib/xen-4.17
MULTIARCH=/usr/lib/x86_64-linux-gnu
GUEST_MEM_MB=${XEN_VM_GUEST_MEM_MB:-192}

die() { echo "build.sh: $*" >&2; exit 1; }
need() { [ -e "$1" ] || die "missing $1 ($2); run scripts/xen-vm/install-deps.sh as root"; }

KVER=${KVER:-$(find /lib/modules -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -1)}
[ -n "$KVER" ] || die "no kernel in /lib/modules (linux-image-amd64); run scripts/xen-vm/install-deps.sh as root"
need /boot/xen-4.17-amd64.gz xen-hypervisor-4.17-amd64
need "/boot/vmlinuz-$KVER" linux-image-amd64
need "$XENLIB/bin/xl" xen-utils-4.17
need /usr/bin/xenstore xenstore-utils
need /bin/busybox busybox-static
command -v cpio >/dev/null || die "missing cpio; run scripts/xen-vm/install-deps.sh as root"
command -v dpkg-deb >/dev/null || die "missing dpkg-deb (dpkg)"
for d in "$DEB" "$GUEST_DEB"; do
  [ -f "$d" ] || die "package '$d' not found (scripts/build-packages.sh builds it)"
done
case "$OUT" in *,*) die "OUT_DIR must not contain a comma (QEMU's -initrd splits on it)";; esac

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/xen-vm-build.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT

# 1. hypervisor + kernel
zcat /boot/xen-4.17-amd64.gz > "$OUT/xen"
cp "/boot/vmlinuz-$KVER" "$OUT/vmlinuz"

# install_deb ROOT DEB: the package's files into ROOT as dpkg lays them out (no docs), and the
# libraries its binary links (ldd)
install_deb() {
  local root=$1 deb=$2 x
  x=$(mktemp -d "$STAGE/deb.XXXXXX")
  dpkg-deb -x "$deb" "$x"
  rm -rf "$x/usr/share/doc"
  [ -x "$x/usr/bin/xentinel" ] || die "$deb has no /usr/bin/xentinel"
  cp -a "$x/." "$root/"
  copy_with_libs "$root" "$x/usr/bin/xentinel" /usr/bin/xentinel
  echo "installed $(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version) into $(basename "$root"):" \
    "$(cd "$x" && find . -type f | sed 's|^\.||' | sort | tr '\n' ' ')"
}

# copy_with_libs ROOT SRC [DEST]: copy SRC to ROOT/DEST (default: same path) plus what ldd lists
copy_with_libs() {
  local root=$1 src=$2 dest=${3:-$2} lib
  mkdir -p "$root$(dirname "$dest")"
  cp -L "$src" "$root$dest"
  # ldd fails on static binaries and scripts: nothing to copy then
  for lib in $(ldd "$src" 2>/dev/null | grep -o '/[^ ]*' || true); do
    [ -e "$root$lib" ] && continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}

# bb_root ROOT: busybox skeleton (merged /usr layout like Debian's)
bb_root() {
  local root=$1 a
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,proc,sys,dev,run,tmp,root,var/lib,var/log}
  cp /bin/busybox "$root/bin/busybox"
  for a in $(/bin/busybox --list); do
    [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
  done
  ln -s ../run "$root/var/run"
  mkdir -p "$root/usr/lib" "$root/usr/lib64" "$root$MULTIARCH"
  ln -s usr/lib "$root/lib"
  ln -s usr/lib64 "$root/lib64"
  # glibc dlopen()s libgcc_s for pthread_cancel/unwinding; ldd does not list it for C programs
  cp -L "$MULTIARCH/libgcc_s.so.1" "$root$MULTIARCH/"
}

pack() { (cd "$1" && find . | cpio -o -H newc --quiet | gzip -1) > "$2"; }

# 2. domU initramfs (PV and PVH guests)
U=$STAGE/domU
bb_root "$U"
copy_with_libs "$U" /usr/bin/xenstore
for t in read write ls rm exists list; do ln -s xenstore "$U/usr/bin/xenstore-$t"; done
install_deb "$U" "$GUEST_DEB"
install -m 755 "$HERE/guest-init.sh" "$U/init"
pack "$U" "$OUT/domU.cpio.gz"

# 3. dom0 initramfs
R=$STAGE/dom0
bb_root "$R"
for b in xl xentop xenstored xenconsoled xen-init-dom0 libxl-save-helper; do
  copy_with_libs "$R" "$XENLIB/bin/$b"
done
copy_with_libs "$R" /usr/bin/xenstore
for t in read write ls rm exists list chmod watch; do ln -s xenstore "$R/usr/bin/xenstore-$t"; done
ln -s "$XENLIB/bin/xl" "$R/usr/sbin/xl"
ln -s "$XENLIB/bin/xentop" "$R/usr/sbin/xentop"
# every Xen library (xentinel may dlopen any of them), and what those need
for l in "$MULTIARCH"/libxen*.so*; do
  [ -e "$R$l" ] || cp -a "$l" "$R$l"
  [ -L "$l" ] || copy_with_libs "$R" "$l"
done
install_deb "$R" "$DEB"
mkdir -p "$R/etc/xen" "$R/var/lib/xen" "$R/var/lib/xenstored" "$R/var/log/xen" "$R/lib/modules/xen"
cp /etc/xen/xl.conf "$R/etc/xen/"
for m in xen-privcmd xenfs xen-evtchn xen-gntdev xen-gntalloc; do
  f=$(find "/lib/modules/$KVER" -name "$m.ko*" | head -1)
  [ -n "$f" ] || die "kernel module $m not found under /lib/modules/$KVER"
  case "$f" in
    *.ko) cp "$f" "$R/lib/modules/xen/$m.ko" ;;
    *.ko.xz) xz -dc "$f" > "$R/lib/modules/xen/$m.ko" ;;
    *) die "unsupported module format: $f" ;;
  esac
done
mkdir -p "$R/boot" "$R/etc/xen/guests"
cp "$OUT/vmlinuz" "$R/boot/vmlinuz"
cp "$OUT/domU.cpio.gz" "$R/boot/domU.cpio.gz"
guest_cfg() { # NAME TYPE
  cat <<EOF
name = "$1"
type = "$2"
kernel = "/boot/vmlinuz"
ramdisk = "/boot/domU.cpio.gz"
extra = "console=hvc0 rdinit=/init quiet"
memory = $GUEST_MEM_MB
vcpus = 1
on_crash = "preserve"
EOF
  # PVH under QEMU-TCG's nested SVM: without this Xen intercepts RDTSCP, TCG gives no NRIP, guest dies
  [ "$2" = pvh ] && echo 'tsc_mode = "native"'
  return 0
}
guest_cfg tinypv pv > "$R/etc/xen/guests/tinypv.cfg"
guest_cfg tinypvh pvh > "$R/etc/xen/guests/tinypvh.cfg"
guest_cfg tinynew pv > "$R/etc/xen/guests/tinynew.cfg"
install -m 755 "$HERE/dom0-init.sh" "$R/init"
pack "$R" "$OUT/dom0.cpio.gz"

ls -l "$OUT/xen" "$OUT/vmlinuz" "$OUT/dom0.cpio.gz" "$OUT/domU.cpio.gz"
