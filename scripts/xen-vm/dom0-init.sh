#!/bin/sh
# /init of the busybox dom0 initramfs built by build.sh. Brings up the Xen toolstack, starts
# `xentinel exporter --source xen`, runs the scenario below and powers the machine off.
#
# Everything the test reads is printed on hvc0 (= serial.log) as blocks:
#   @@BEGIN <name>@@
#   ...output of the step (stdout and stderr)...
#   @@END <name> rc=<exit status> t0=<uptime> t1=<uptime> lines=<number of output lines>@@
# A block is printed only after its command has finished, so Xen's own console messages cannot land
# in the middle of it (the `lines=` count lets the reader check that). Times are dom0's /proc/uptime.
# The last line is @@DONE@@.
# No `set -e`: this is PID 1, and if it exits the kernel panics and QEMU only stops at boot.sh's timeout;
# every step reports its rc instead and the scenario goes on to poweroff.
#
# Scenario: tinypv (PV) + tinypvh (PVH) each run `xentinel guest-agent --interval 1s`;
#   snapshot 1 (scrape + xentop + xl list -l + xl list -v), sleep, snapshot 2;
#   memhog 64 MB in tinypv, snapshot 3; xl destroy tinypv, snapshot 4; xl create tinynew, snapshot 5;
#   xl migrate tinypvh to localhost, snapshot 6; xl destroy tinynew (PV: cannot live-migrate);
#   `xentinel webhook` + one evacuation alert for "dom0a" live-migrates tinypvh (xl, to localhost)
#   after its first attempt failed and left it paused (the harness paused it and the receiver
#   refuses once: the webhook resumes it and retries), job JSON, snapshot 7; then tinypvh crashes
#   itself (sysrq) and a second alert's step meets the crashed domain; the webhook's /metrics;
#   logs (and every kernel line about a process dying of a signal); poweroff.
# Before each step a `@@START name t0=..@@` line says what dom0 is doing (for a harness that must
# say where a run stopped).
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/xen-4.17/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mkdir -p /run/xen /run/xenstored /run/lock /var/log/xen/console /tmp
dmesg -n 1   # keep kernel messages off the console (they stay in dmesg, printed at the end)
ip link set lo up

PORT=9741
URL=http://127.0.0.1:$PORT/metrics
MEMHOG_MB=64

# Under QEMU-TCG, now and then a process in the VM dies right after fork() (SIGSEGV in glibc's fork
# child code, or a NULL pointer in libxenstore, more often when the host is loaded). So the script
# forks little: times come from the `read` builtin, polls are 1 s apart, and read-only steps are
# retried when they die of a signal (the retry is counted in the step's end marker).

# now: NOW=dom0 uptime in seconds (centiseconds), NOW_S=whole seconds; no fork
now() {
  read -r NOW _ </proc/uptime
  NOW_S=${NOW%.*}
}

# xvm_inject=dom0-panic:STEP on the kernel command line (the test's XEN_VM_INJECT, never used by
# CI): dom0 panics as STEP begins, to show how the harness tells and reruns an environment fault.
read -r CMDLINE </proc/cmdline
case " $CMDLINE " in *" xvm_inject="*) INJECT=${CMDLINE#*xvm_inject=} && INJECT=${INJECT%% *} ;; *) INJECT= ;; esac
inject() { # STEP
  case "$INJECT" in "dom0-panic:$1")
    echo "xvm_inject: panicking dom0 as step $1 begins"
    echo c >/proc/sysrq-trigger
    ;;
  esac
}

# block NAME CMD [ARGS...]: run CMD, then print its output between markers, with rc and times
block() {
  blk_name=$1
  shift
  now
  blk_t0=$NOW
  echo "@@START $blk_name t0=$NOW@@"
  inject "$blk_name"
  "$@" >/tmp/block.out 2>&1
  blk_rc=$?
  now
  blk_t1=$NOW
  blk_emit
  return $blk_rc
}

# rblock NAME CMD [ARGS...]: block for a read-only CMD: run again (twice at most) if it died of a signal
rblock() {
  blk_name=$1
  shift
  blk_retries=0
  now
  echo "@@START $blk_name t0=$NOW@@"
  inject "$blk_name"
  while :; do
    now
    blk_t0=$NOW
    "$@" >/tmp/block.out 2>&1
    blk_rc=$?
    now
    blk_t1=$NOW
    if [ "$blk_rc" -le 128 ] || [ "$blk_retries" -ge 2 ]; then break; fi
    blk_retries=$((blk_retries + 1))
  done
  blk_emit "retries=$blk_retries"
  blk_retries=
  return $blk_rc
}

blk_emit() { # [EXTRA]: print /tmp/block.out between the markers of block $blk_name
  echo "@@BEGIN $blk_name@@"
  awk 1 /tmp/block.out
  blk_n=$(awk 'END { print NR }' /tmp/block.out)
  echo "@@END $blk_name rc=$blk_rc t0=$blk_t0 t1=$blk_t1 lines=$blk_n${1:+ $1}@@"
}

r() { # CMD [ARGS...]: an idempotent command, run again (twice at most) if it died of a signal
  r_n=0
  while :; do
    "$@"
    r_rc=$?
    if [ "$r_rc" -le 128 ] || [ "$r_n" -ge 2 ]; then return "$r_rc"; fi
    r_n=$((r_n + 1))
    echo "(re-running $1 after it died with rc=$r_rc)" >&2
  done
}

since() { # T0: seconds from T0 to now
  now
  echo "$NOW $1" | awk '{ printf "%.2f", $1 - $2 }'
}

setup_xen() {
  echo "kernel $(uname -r); hypervisor $(cat /sys/hypervisor/type) $(cat /sys/hypervisor/version/major).$(cat /sys/hypervisor/version/minor)"
  for m in xen-privcmd xenfs xen-evtchn xen-gntdev xen-gntalloc; do
    insmod /lib/modules/xen/$m.ko || { echo "insmod $m failed"; return 1; }
  done
  mount -t xenfs xenfs /proc/xen || return 1
  xenstored --pid-file=/run/xenstored.pid || { echo "xenstored failed"; return 1; }
  for _ in 1 2 3 4 5 6 7 8 9 10; do xenstore-read / >/dev/null 2>&1 && break; sleep 1; done
  xen-init-dom0 || { echo "xen-init-dom0 failed"; return 1; }
  xenconsoled --pid-file=/run/xenconsoled.pid --log=guest || { echo "xenconsoled failed"; return 1; }
  xl info | grep -E '^(xen_version|nr_cpus|total_memory|free_memory)'
}

start_exporter() {
  # Under TCG on a loaded 2-core host a xenstore walk took 5 s (load 9): give each source 20 s, not
  # the default 5 s (20 s here is well under 1 s on hardware).
  mkdir -p /etc/xentinel
  printf 'exporter:\n  source_timeout: 20s\n' >/etc/xentinel/exporter.yml
  set -- exporter --source xen --config.file /etc/xentinel/exporter.yml --web.listen-address "127.0.0.1:$PORT"
  echo "xentinel $*"
  xentinel "$@" >/run/exporter.log 2>&1 &
  EXPORTER_PID=$!
  now
  _t0=$NOW
  _end=$((NOW_S + 30))
  while now && [ "$NOW_S" -lt "$_end" ]; do
    if wget -qO /dev/null "$URL" 2>/dev/null; then
      echo "exporter (pid $EXPORTER_PID) answers after $(since "$_t0") s"
      return 0
    fi
    if ! kill -0 "$EXPORTER_PID" 2>/dev/null; then
      wait "$EXPORTER_PID"
      EXPORTER_RC=$?
      echo "exporter exited with rc=$EXPORTER_RC before answering; its stderr:"
      cat /run/exporter.log
      return 1
    fi
    sleep 0.5
  done
  echo "exporter not answering on $URL after 30 s; its output so far:"
  cat /run/exporter.log
  return 1
}

dom_flags() { # DOMAIN: xl list's state column (rbpscd), empty when there is no such domain
  xl list "$1" 2>/dev/null | awk 'NR == 2 { print $5 }'
}

agent_ready() { # DOMID: the domain's guest agent has published something under data/xentinel
  [ -n "$(xenstore-list "/local/domain/$1/data/xentinel" 2>/dev/null)" ]
}

wait_agents() { # NAME...: wait (120 s at most; less if one crashed) until each domain's agent has published
  _ids=
  for d in "$@"; do
    _id=$(r xl domid "$d") || { echo "no domain $d"; return 1; }
    _ids="$_ids $_id"
  done
  now
  _t0=$NOW
  _end=$((NOW_S + 120))
  _n=0
  while now && [ "$NOW_S" -lt "$_end" ]; do
    _all=1
    for _id in $_ids; do agent_ready "$_id" || { _all=; break; }; done
    [ -n "$_all" ] && break
    _n=$((_n + 1))
    if [ $((_n % 5)) -eq 0 ]; then # a crashed or shut-down domain will not publish: stop waiting
      for _id in $_ids; do
        case $(dom_flags "$_id") in *s* | *c*)
          echo "domid $_id is $(dom_flags "$_id"): it crashed or shut down"
          return 1
          ;;
        esac
      done
    fi
    sleep 1
  done
  echo "waited $(since "$_t0") s"
  for _id in $_ids; do
    echo "domid $_id ready=$(agent_ready "$_id" && echo yes || echo no)"
    xenstore-ls -p "/local/domain/$_id/data" 2>&1
  done
  [ -n "$_all" ] || { echo "guest agents not ready after 120 s"; return 1; }
}

snapshot() { # N: the exporter's view, then xentop's and xl's, as close together as possible
  rblock "scrape-$1" wget -qO- "$URL"
  rblock "xentop-$1" xentop -b -i 1
  rblock "xl-list-l-$1" xl list -l
  rblock "xl-list-$1" xl list -v
}

ask_guest() { # DOMAIN KEY VALUE: write data/xvmtest/KEY for the domain's /init (guest-init.sh)
  _id=$(r xl domid "$1") || return 1
  _d=/local/domain/$_id/data/xvmtest
  r xenstore-write "$_d/$2" "$3" || return 1
  r xenstore-chmod "$_d" "n$_id" && r xenstore-chmod "$_d/$2" "n$_id"
}

memhog() { # ask tinypv's /init to touch MEMHOG_MB of fresh memory; wait for its answer
  ask_guest tinypv memhog "$MEMHOG_MB" || return 1
  _id=$(r xl domid tinypv) || return 1
  _d=/local/domain/$_id/data/xvmtest
  now
  _end=$((NOW_S + 60))
  while now && [ "$NOW_S" -lt "$_end" ]; do
    if _r=$(xenstore-read "$_d/memhog-result" 2>/dev/null); then
      echo "$_r"
      case "$_r" in rc=0*) ;; *) return 1 ;; esac
      # then wait (20 s at most) until the guest agent has published a pgfault count from after the hog
      _after=$(echo "$_r" | tr ' ' '\n' | sed -n 's/^pgfault_after=//p')
      now
      _t0=$NOW
      _end=$((NOW_S + 20))
      while now && [ "$NOW_S" -lt "$_end" ]; do
        _p=$(xenstore-read "/local/domain/$_id/data/xentinel/pgfault" 2>/dev/null)
        if [ -n "$_p" ] && [ "$_p" -ge "$_after" ] 2>/dev/null; then
          echo "agent published pgfault=$_p (>= $_after) within $(since "$_t0") s of the hog's answer"
          return 0
        fi
        sleep 1
      done
      echo "agent did not publish pgfault >= $_after within 20 s (last: '$_p')"
      return 0   # the test judges the exporter's numbers
    fi
    sleep 1
  done
  echo "no memhog-result from tinypv after 60 s"
  return 1
}

migrate() { # live-migrate tinypvh to localhost: xl runs the "host" argument as the command when -s ""
  _old=$(r xl domid tinypvh) || return 1
  echo "old_domid=$_old"
  _try=1
  while :; do
    now
    _t0=$NOW
    timeout 240 xl migrate -s "" tinypvh "xl migrate-receive"
    _rc=$?
    _secs=$(since "$_t0")
    _new=$(r xl domid tinypvh 2>/dev/null)
    echo "attempt=$_try migrate_rc=$_rc migrate_seconds=$_secs domid_after=$_new"
    # Once more (only once) when the attempt failed before anything moved: the domain still runs
    # here under its old domid and no half-received copy exists. Under TCG a forked xl helper
    # sometimes dies at birth (see the top of this file).
    if [ "$_rc" -eq 0 ] || [ "$_try" -ge 2 ] || [ "$_new" != "$_old" ] ||
      xl domid tinypvh--incoming >/dev/null 2>&1; then
      break
    fi
    _try=$((_try + 1))
  done
  echo "new_domid=$_new"
  echo "migrate_rc=$_rc migrate_seconds=$_secs attempts=$_try"
  return "$_rc"
}

# ---- the webhook's command executor, driven by an alert, on this real hypervisor ----------------
# There is no Prometheus here, so the webhook plans from the exporter itself (webhook.exporters).
# Source and target are the same machine (`xl migrate` to localhost), so the inventory names the one
# exporter twice: dom0a (the alert's host; it owns the domains: the first name of a URL does) and
# dom0b (only its free memory, up and warnings), which is then the only possible target. The
# executor's argv is `xl migrate -s "" {domain} "xl migrate-receive"`: with an empty -s, xl runs the
# "host" argument as the receiving shell command, so {target} (dom0b) is not used by it.
# Runs after `xl destroy tinynew`: tinynew is PV, and PV domUs cannot live-migrate on Debian's Xen
# (no shadow paging), so its step would fail; with only tinypvh (PVH) left on dom0a the job has
# exactly one step, which can succeed.
# The receiving command is `xvm-receive`: `xl migrate-receive`, except that it refuses once while
# /run/xvm-refuse-once exists. Before the alert the harness pauses tinypvh and sets that flag, so the
# webhook's first attempt fails at once and leaves tinypvh paused (as xl does: checked on this
# hypervisor); the webhook must find it paused, resume it (`xl unpause`, its default), and retry
# (`retry_backoff: 1s`). Then tinypvh crashes itself (on_crash = "preserve") and a second alert's
# step must meet a crashed domain: failed with that reason, counted in the webhook's metrics.
WEBHOOK=http://127.0.0.1:10027

webhook_start() {
  mkdir -p /etc/xentinel
  cat >/etc/xentinel/webhook.yml <<EOF
webhook:
  exporters:
    - host: dom0a
      url: $URL
    - host: dom0b
      url: $URL
  headroom_bytes: 134217728
  executor:
    command: [xl, migrate, -s, "", "{domain}", xvm-receive]
    timeout: 120s
    retries: 2
    retry_backoff: 1s
EOF
  cat >/usr/local/bin/xvm-receive <<'EOF'
#!/bin/sh
if [ -e /run/xvm-refuse-once ]; then
  rm -f /run/xvm-refuse-once
  echo "xvm-receive: refusing this migration (once)" >&2
  exit 1
fi
exec xl migrate-receive
EOF
  chmod 755 /usr/local/bin/xvm-receive
  cat /etc/xentinel/webhook.yml
  set -- webhook --executor command --insecure-no-auth --db.path /tmp/jobs.sqlite \
    --config.file /etc/xentinel/webhook.yml --web.listen-address 127.0.0.1:10027
  echo "xentinel $*"
  xentinel "$@" >/run/webhook.log 2>&1 &
  WEBHOOK_PID=$!
  now
  _t0=$NOW
  _end=$((NOW_S + 30))
  while now && [ "$NOW_S" -lt "$_end" ]; do
    if wget -qO /dev/null "$WEBHOOK/-/ready" 2>/dev/null; then
      echo "webhook (pid $WEBHOOK_PID) ready after $(since "$_t0") s"
      return 0
    fi
    kill -0 "$WEBHOOK_PID" 2>/dev/null || break
    sleep 0.5
  done
  echo "webhook not ready on $WEBHOOK; its output:"
  cat /run/webhook.log
  return 1
}

webhook_prepare() { # the first attempt will fail and leave tinypvh paused
  touch /run/xvm-refuse-once && r xl pause tinypvh && xl list tinypvh
}

webhook_alert() { # FINGERPRINT: POST one firing Alertmanager v4 alert for dom0a
  _at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  cat >/tmp/alert.json <<EOF
{"version":"4","groupKey":"{}:{alertname=\"XentinelHostWarningFailure\"}","truncatedAlerts":0,
 "status":"firing","receiver":"xentinel","groupLabels":{},"commonLabels":{},"externalURL":"",
 "alerts":[{"status":"firing","labels":{"alertname":"XentinelHostWarningFailure",
   "xentinel_action":"evacuate","host":"dom0a","kind":"maintenance"},"annotations":{},
   "startsAt":"$_at","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"$1"}]}
EOF
  wget -qO- --header 'Content-Type: application/json' --post-file /tmp/alert.json "$WEBHOOK/alerts"
  _rc=$?
  echo
  return $_rc
}

webhook_job() { # ID: wait (180 s at most) until the job is final, then print it (JSON)
  now
  _t0=$NOW
  _end=$((NOW_S + 180))
  _state=
  while now && [ "$NOW_S" -lt "$_end" ]; do
    _j=$(wget -qO- "$WEBHOOK/jobs/$1" 2>/dev/null)
    _head=${_j%%\"steps\":*} # the job's own fields come before its steps
    _state=${_head#*\"state\":\"}
    _state=${_state%%\"*}
    case "$_state" in done | failed | cancelled | planned) break ;; esac
    sleep 1
  done
  echo "$_j"
  echo "job_state=$_state waited_seconds=$(since "$_t0")"
  [ "$_state" = done ]
}

crash_guest() { # DOMAIN: ask its /init to crash its kernel; wait (30 s at most) until Xen shows it crashed
  ask_guest "$1" crash 1 || return 1
  now
  _t0=$NOW
  _end=$((NOW_S + 30))
  while now && [ "$NOW_S" -lt "$_end" ]; do
    case $(dom_flags "$1") in *c*) break ;; esac
    sleep 1
  done
  echo "waited $(since "$_t0") s"
  xl list "$1"
  case $(dom_flags "$1") in *c*) ;; *) return 1 ;; esac
}

webhook_status() {
  if kill -0 "$WEBHOOK_PID" 2>/dev/null; then echo "webhook still running"; else echo "webhook exited"; fi
  echo "--- webhook output:"
  cat /run/webhook.log
}
# ------------------------------------------------------------------------------------------------

exporter_status() {
  if kill -0 "$EXPORTER_PID" 2>/dev/null; then
    echo "exporter still running"
  else
    [ -n "${EXPORTER_RC:-}" ] || { wait "$EXPORTER_PID"; EXPORTER_RC=$?; }
    echo "exporter exited rc=$EXPORTER_RC"
  fi
  echo "--- exporter output:"
  cat /run/exporter.log
}

echo "@@XEN-VM dom0 init started@@"
block setup setup_xen
block exporter-start start_exporter
block xl-create-tinypv timeout 120 xl create /etc/xen/guests/tinypv.cfg
block xl-create-tinypvh timeout 120 xl create /etc/xen/guests/tinypvh.cfg
rblock wait-agents wait_agents tinypv tinypvh
snapshot 1
sleep 5
snapshot 2
block memhog memhog
sleep 1
snapshot 3
block xl-destroy-tinypv r timeout 60 xl destroy tinypv
snapshot 4
block xl-create-tinynew timeout 120 xl create /etc/xen/guests/tinynew.cfg
snapshot 5
block migrate migrate
rblock wait-agent-migrated wait_agents tinypvh
sleep 2
snapshot 6
block xl-destroy-tinynew r timeout 60 xl destroy tinynew
block webhook-start webhook_start
block webhook-prepare webhook_prepare
block webhook-alert webhook_alert 0123456789abcdef
block webhook-job webhook_job 1
rblock wait-agent-webhook wait_agents tinypvh
snapshot 7
block crash-tinypvh crash_guest tinypvh
rblock scrape-crashed wget -qO- "$URL"
block webhook-alert-2 webhook_alert 0123456789abcdf0
block webhook-job-2 webhook_job 2
rblock webhook-metrics wget -qO- "$WEBHOOK/metrics"
block webhook-status webhook_status
block exporter-status exporter_status
block xenstore-dom0 sh -c 'xenstore-ls -f /local/domain/0; xenstore-ls -f /vm 2>&1 | head -n 20'   # for reading the exporter's Domain-0 labels
# shellcheck disable=SC2016 # expanded by the inner sh
block guest-consoles sh -c 'for f in /var/log/xen/console/guest-*.log; do echo "--- $f"; cat "$f"; done'
block xl-dmesg-tail sh -c 'xl dmesg | tail -n 40 | sed "s/^/xl-dmesg| /"'   # the reader drops lines starting with (XEN)
block dmesg-tail sh -c 'dmesg | tail -n 40'
# every kernel line about a process dying of a signal, or a kernel crash (for the harness's classifier)
block dmesg-signals sh -c "dmesg | grep -E 'segfault at|traps: |general protection|Kernel panic|BUG: |Oops: |kernel BUG'; true"
echo "@@DONE@@"
sync
poweroff -f
