#!/bin/sh
# /init of the domU initramfs (PV and PVH guests alike). Output goes to the guest console (hvc0),
# which xenconsoled in dom0 logs to /var/log/xen/console/guest-<name>.log.
#
# 1. starts `xentinel guest-agent --interval 1s` (it publishes data/xentinel/* in our own xenstore dir);
# 2. waits for dom0 to write data/xvmtest/memhog = MB, then touches that much fresh anonymous memory
#    (busybox dd: malloc(MB) as its buffer, read() from /dev/zero faults in every page, ~256 minor
#    faults per MB) and answers in data/xvmtest/memhog-result with the /proc/vmstat pgfault delta;
# 3. crashes its kernel (`echo c > /proc/sysrq-trigger`) when dom0 writes data/xvmtest/crash: with
#    `on_crash = "preserve"` the domain stays, crashed, for the webhook to find.
# No `set -e`: PID 1 must not exit.
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev   # /dev/xen/xenbus (xenbus frontend is built into Debian's kernel)
now() { read -r NOW _ </proc/uptime; }   # the `read` builtin: no fork (see dom0-init.sh)
log() {
  now
  echo "GUEST[$NOW] $*"
}
pgfault() { awk '$1 == "pgfault" { print $2 }' /proc/vmstat; }

DOMID=$(xenstore-read domid 2>/dev/null)
NAME=$(xenstore-read name 2>/dev/null)
log "up: kernel $(uname -r) domid=$DOMID name=$NAME $(grep MemTotal /proc/meminfo | tr -s ' ')"

(
  xentinel guest-agent --interval 1s
  log "AGENT-EXIT rc=$?"
) &

done_mb=
while true; do
  if [ -n "$(xenstore-read data/xvmtest/crash 2>/dev/null)" ]; then
    log "CRASH requested by dom0"
    echo c >/proc/sysrq-trigger
  fi
  mb=$(xenstore-read data/xvmtest/memhog 2>/dev/null)
  if [ -n "$mb" ] && [ -z "$done_mb" ]; then
    done_mb=$mb
    b=$(pgfault)
    now
    t0=$NOW
    tries=0
    while :; do   # dd again if it died of a signal (a TCG flake), at most twice
      dd if=/dev/zero of=/dev/null bs="${mb}M" count=1 2>/dev/null
      rc=$?
      if [ "$rc" -le 128 ] || [ "$tries" -ge 2 ]; then break; fi
      tries=$((tries + 1))
    done
    now
    t1=$NOW
    a=$(pgfault)
    res="rc=$rc mb=$mb pgfault_before=$b pgfault_after=$a pgfault_delta=$((a - b)) t0=$t0 t1=$t1 retries=$tries"
    log "MEMHOG $res"
    xenstore-write data/xvmtest/memhog-result "$res" || log "MEMHOG could not write the result"
  fi
  sleep 1
done
