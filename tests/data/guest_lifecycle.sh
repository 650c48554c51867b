#!/bin/bash
# Run in Dom0 by tests/test_guests_boot.py (as the build's dom0_autorun). Each result is one
# "XK key value..." line for the test to parse; nothing here decides pass or fail.
guest=${1:-g1}
log=/var/log/xen/console/guest-$guest.log
say() { echo "XK $(cut -d" " -f1 /proc/uptime) $*"; }

wait_for() {  # wait_for SECONDS COMMAND...: poll until COMMAND succeeds
    local n=$(($1 * 5)); shift
    while ! "$@" >/dev/null 2>&1; do
        n=$((n - 1)); [ $n -le 0 ] && return 1
        sleep 0.2
    done
}

field() {  # field DOMAIN COLUMN: a column of `xl list DOMAIN` (2 ID, 3 Mem, 4 VCPUs, 5 State)
    xl list "$1" 2>/dev/null | awk -v c="$2" 'NR == 2 { print $c }'
}

xl list | awk 'NR > 1 { print "XK list", $1, $2, $3, $4 }'
say dom0less-log "$(tr '\n' ' ' </var/log/xen/init-dom0less.log)"

uptime() { cut -d' ' -f1 /proc/uptime; }
start=$(uptime)
xl create "/etc/xen/$guest.cfg" >/tmp/create.out 2>&1
say create $? "$(tail -n 1 /tmp/create.out)"
wait_for 180 grep -q "xenkit: guest $guest ready" "$log"
say banner $? "$(awk -v s="$start" -v t="$(uptime)" 'BEGIN { printf "%.2f", t - s }')"

wait_for 60 grep -q "xenkit: guest $guest ping" "$log"
say guest-ping "$(grep -o "xenkit: guest $guest ping .*" "$log" | head -n 1)"
ip=$(sed -n 's/.*xenkit\.ip=\([0-9.]*\).*/\1/p' "/etc/xen/$guest.cfg")
ping -c 3 -W 2 "$ip" >/tmp/ping.out 2>&1
say dom0-ping $? "$ip" "$(grep -o '[0-9]* packets received' /tmp/ping.out)"

say vcpus-before "$(field "$guest" 4)"
xl vcpu-set "$guest" 2
wait_for 30 test "$(field "$guest" 4)" = 2
say vcpus-after "$(field "$guest" 4)"

say mem-before "$(field "$guest" 3)"
xl mem-set "$guest" 96m
say mem-set $? "$(xenstore-read "/local/domain/$(field "$guest" 2)/memory/target")"
# The guest's balloon driver hands pages back a batch at a time.
wait_for 60 test "$(field "$guest" 3)" -lt 128
sleep 3
say mem-after "$(field "$guest" 3)"

xl pause "$guest"
say paused "$(field "$guest" 5)"
xl unpause "$guest"
say unpaused "$(field "$guest" 5)"

gone() { ! xl list "$1" >/dev/null 2>&1; }
timeout 120 xl shutdown -w "$guest" >/tmp/shutdown.out 2>&1
rc=$?
[ $rc = 0 ] || { echo "guest console:"; tail -n 15 "$log"; cat /tmp/shutdown.out; }
# -w returns once the guest has shut down; xl's own watcher then destroys it.
wait_for 30 gone "$guest"
say shutdown $rc "$(gone "$guest" && echo gone || echo present)"

xl create "/etc/xen/$guest.cfg" >/dev/null 2>&1
say recreate $?
xl destroy "$guest"
say destroy $? "$(gone "$guest" && echo gone || echo present)"
say done
