#!/bin/sh
# Install what scripts/xen-vm/{build,boot}.sh need on Debian 12 (bookworm), nothing more.
# Run as root. Takes ~75 s (most of it is linux-image-amd64's postinst building an initrd we don't use).
#   qemu-system-x86            QEMU (TCG) that runs Xen
#   xen-hypervisor-4.17-amd64  /boot/xen-4.17-amd64.gz
#   xen-utils-4.17             xl, xentop, xenstored, xenconsoled, xen-init-dom0 (+ libxen*)
#   xenstore-utils             /usr/bin/xenstore (xenstore-read/-write/...), also used inside the domUs
#   linux-image-amd64          the kernel for dom0 and for the PV/PVH domUs, and its modules
#   busybox-static             userland of both initramfs images
#   cpio                       to pack them
# Installing xen-utils-4.17 on a host without Xen prints "ERROR: Can't find hypervisor information
# in sysfs!"; that is harmless.
set -eu
if [ "$(id -u)" != 0 ]; then echo "install-deps.sh: must run as root" >&2; exit 1; fi
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  qemu-system-x86 xen-hypervisor-4.17-amd64 xen-utils-4.17 xenstore-utils \
  linux-image-amd64 busybox-static cpio
