#!/bin/bash
# boot.sh OUT_DIR TIMEOUT_SECONDS
#
# Boots what build.sh put in OUT_DIR: Xen 4.17 (multiboot) + Debian's kernel as PV dom0 + dom0.cpio.gz.
# All console output (Xen on com1, dom0 on hvc0, which Xen forwards to com1) goes to OUT_DIR/serial.log.
# dom0's /init ends with `poweroff -f`, and Xen runs with `noreboot`, so QEMU exits by itself;
# `timeout` kills it after TIMEOUT_SECONDS anyway (exit status 124 then).
#
# Accelerator: TCG (KVM on these machines is a kvm-pvm backend that cannot run Xen). Set
# XEN_VM_ACCEL=kvm to try KVM elsewhere. CPU model: `qemu64,+svm,+npt` (SVM + nested paging for the
# PVH domU). `-cpu max,-smap` works too (with SMAP on, the PV dom0 faults at once under TCG), but see below.
# Extra knobs: XEN_VM_MEM (MiB, 2048), XEN_VM_DOM0_MEM (768M), XEN_VM_XEN_EXTRA, XEN_VM_LINUX_EXTRA,
# XEN_VM_SMP (2), XEN_VM_TCG_THREAD (multi), XEN_VM_CPU (qemu64,+svm,+npt).
# Known flake with `-cpu max,-smap`: processes in the VM die of SIGSEGV/SIGABRT right after fork(), and
# once dom0 read garbage from a file, mostly around xl create/migrate and on a loaded host (crash
# messages in ~7 of 11 runs); -avx/-avx2, thread=single and -smp 1 did not help. With the plain
# qemu64 model + svm,npt: 0 crash messages in the 2 runs so far (a small sample).
set -eu

[ $# -eq 2 ] || { echo "usage: $0 OUT_DIR TIMEOUT_SECONDS" >&2; exit 2; }
OUT=$1
TIMEOUT=$2
command -v qemu-system-x86_64 >/dev/null ||
  { echo "boot.sh: qemu-system-x86_64 not found; run scripts/xen-vm/install-deps.sh as root" >&2; exit 1; }
for f in xen vmlinuz dom0.cpio.gz; do
  [ -f "$OUT/$f" ] || { echo "boot.sh: $OUT/$f missing; run scripts/xen-vm/build.sh first" >&2; exit 1; }
done

case "${XEN_VM_ACCEL:-tcg}" in
  kvm) ACCEL="-accel kvm -cpu host" ;;
  tcg) ACCEL="-accel tcg,thread=${XEN_VM_TCG_THREAD:-multi} -cpu ${XEN_VM_CPU:-qemu64,+svm,+npt}" ;;
  *) echo "boot.sh: XEN_VM_ACCEL must be tcg or kvm" >&2; exit 2 ;;
esac
DOM0_MEM=${XEN_VM_DOM0_MEM:-768M}

# Run from inside OUT_DIR: -initrd is a comma-separated module list, so the paths must be plain names.
cd "$OUT"
rm -f serial.log
# shellcheck disable=SC2086 # ACCEL is two options on purpose
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 $ACCEL -smp "${XEN_VM_SMP:-2}" -m "${XEN_VM_MEM:-2048}" \
  -nographic -no-reboot -monitor none -serial stdio -nic none \
  -kernel xen \
  -append "dom0_mem=$DOM0_MEM,max:$DOM0_MEM dom0_max_vcpus=1 console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all noreboot ${XEN_VM_XEN_EXTRA:-}" \
  -initrd "vmlinuz console=hvc0 earlyprintk=xen rdinit=/init loglevel=6 ${XEN_VM_LINUX_EXTRA:-},dom0.cpio.gz" \
  </dev/null >serial.log 2>&1
