#!/bin/bash
# Run in Dom0 by tests/test_guests_boot.py (as the build's dom0_autorun). Each result is one
# "XK key value..." line for the test to parse; nothing here decides pass or fail.
guest=${1:-g1}  # $2: a second guest whose xl.cfg pings the first
# $3 "basic": leave out what does not depend on the board (xl console, the second guest,
# pause, shutdown and re-create) for the slower emulated Pi 4.
full=true
[ "${3:-}" = basic ] && full=false
log=/var/log/xen/console/guest-$guest.log
say() { echo "XK $(cut -d" " -f1 /proc/uptime) $*"; }

wait_for() {  # wait_for SECONDS COMMAND...: poll until COMMAND succeeds
    # By the clock, not by tries: under emulation one `xl list` can take seconds.
    local end
    end=$(awk -v u="$(cut -d' ' -f1 /proc/uptime)" -v s="$1" 'BEGIN { print int(u + s) }')
    shift
    # Once a second: each try forks, and under emulation Dom0's forks take the CPU from
    # the guest being waited for.
    while ! "$@" >/dev/null 2>&1; do
        [ "$(cut -d. -f1 /proc/uptime)" -ge "$end" ] && return 1
        sleep 1
    done
}

field() {  # field DOMAIN COLUMN: a column of `xl list DOMAIN` (2 ID, 3 Mem, 4 VCPUs, 5 State)
    xl list "$1" 2>/dev/null | awk -v c="$2" 'NR == 2 { print $c }'
}
has() {  # has DOMAIN COLUMN OP VALUE: test a column, read afresh on each call
    test "$(field "$1" "$2")" "$3" "$4"
}

xl list | awk 'NR > 1 { print "XK list", $1, $2, $3, $4 }'
say configs $(cd /etc/xen && ls ./*.cfg | sed 's|^\./||')
say dom0less-log "$(tr '\n' ' ' </var/log/xen/init-dom0less.log 2>/dev/null)"

uptime() { cut -d' ' -f1 /proc/uptime; }
start=$(uptime)
# xenkit's Dom0 starts guests with xenkit-start (xl create, after it checked the guest can run
# here and made its disk).
xenkit-start "$guest" >/tmp/create.out 2>&1
say create $? "$(tr '\n' ' ' </tmp/create.out | tail -c 400)"
wait_for 180 grep -a -q "xenkit: guest $guest ready" "$log"
say banner $? "$(awk -v s="$start" -v t="$(uptime)" 'BEGIN { printf "%.2f", t - s }')"

# One line per address in the guest's xenkit.ping= list: guest-ping, guest-ping2 ...
peers=$(sed -n 's/.*xenkit\.ping=\([^ "]*\).*/\1/p' "/etc/xen/$guest.cfg" | tr , ' ' | wc -w)
# -a: a console log can hold NUL bytes, and grep would then print "binary file matches".
pinged() { [ "$(grep -a -c "xenkit: guest $guest ping" "$log")" -ge "$peers" ]; }
# A DHCP lease first where the guest asks for one (up to 20 s of udhcpc's tries).
wait_for 150 pinged || say guest-ping-late "$(tail -n 6 "$log" | tr -d '\0' | tr '\n' ' ')"
n=0
grep -a -o "xenkit: guest $guest ping .*" "$log" | while read -r line; do
    n=$((n + 1))
    say "guest-ping$([ $n = 1 ] || echo $n)" "$line"
done
say guest-disks "$(grep -a -o "xenkit: guest $guest disks.*" "$log" | head -n 1 | cut -d' ' -f5-)"
say guest-driver "$(sed -n "s/.*xenkit: guest $guest address .* driver \([^ ]*\).*/\1/p" "$log" | head -n 1)"
# The guest's address, static or from DHCP, as its init reported it.
ip=$(sed -n "s/.*xenkit: guest $guest address \([0-9.]*\).*/\1/p" "$log" | head -n 1)
# One reply first, so the count below measures the path, not its set-up; and 10 s per reply,
# since under emulation on a loaded 2-core host the guest's vCPU can be off a CPU for seconds
# (run alone, `-W 2` once got 2 replies of 3). A late reply still counts; a lost one fails.
wait_for 60 ping -c 1 -W 5 "$ip"
ping -c 3 -W 10 "$ip" >/tmp/ping.out 2>&1
say dom0-ping $? "$ip" "$(grep -o '[0-9]* packets received' /tmp/ping.out)"

if $full; then
# xl console needs a terminal: drive it through a pty, type a command, read its answer,
# leave with Ctrl-].
python3 - "$guest" <<'PY'
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp("xl", ["xl", "console", sys.argv[1]])
seen, deadline = b"", time.time() + 60
os.write(fd, b"\necho XKCON-$((6 * 7))\n")
while time.time() < deadline and b"XKCON-42" not in seen:
    if select.select([fd], [], [], 1)[0]:
        try:
            seen += os.read(fd, 4096)
        except OSError:
            break
os.write(fd, b"\x1d")
_, status = os.waitpid(pid, 0)
print("XK", open("/proc/uptime").read().split()[0], "console",
      "answered" if b"XKCON-42" in seen else "silent", os.waitstatus_to_exitcode(status))
PY
    if [ -n "$2" ]; then
        # A second guest on the bridge pings the first.
        xenkit-start "$2" >/dev/null 2>&1
        wait_for 180 grep -a -q "xenkit: guest $2 ping" "/var/log/xen/console/guest-$2.log"
        say peer-ping "$(grep -a -o "xenkit: guest $2 ping .*" "/var/log/xen/console/guest-$2.log")"
        xl destroy "$2"
    fi
fi

say vcpus-before "$(field "$guest" 4)"
xl vcpu-set "$guest" 2
wait_for 30 has "$guest" 4 = 2
say vcpus-after "$(field "$guest" 4)"
if ! has "$guest" 4 = 2; then
    say vcpus-why "$(xl vcpu-list "$guest" | tr -s ' \n' ' ') / $(tail -n 8 "$log" | tr '\n' ' ')"
fi

say mem-before "$(field "$guest" 3)"
xl mem-set "$guest" 96m
say mem-set $? "$(xenstore-read "/local/domain/$(field "$guest" 2)/memory/target")"
# The guest's balloon driver hands pages back a batch at a time.
wait_for 60 has "$guest" 3 -lt 128
sleep 3
say mem-after "$(field "$guest" 3)"

gone() { ! xl list "$1" >/dev/null 2>&1; }
if $full; then
    xl pause "$guest"
    say paused "$(field "$guest" 5)"
    xl unpause "$guest"
    say unpaused "$(field "$guest" 5)"

    timeout 120 xl shutdown -w "$guest" >/tmp/shutdown.out 2>&1
    rc=$?
    [ $rc = 0 ] || { echo "guest console:"; tail -n 15 "$log"; cat /tmp/shutdown.out; }
    # -w returns once the guest has shut down; xl's own watcher then destroys it.
    wait_for 30 gone "$guest"
    say shutdown $rc "$(gone "$guest" && echo gone || echo present)"

    xenkit-start "$guest" >/dev/null 2>&1
    say recreate $?
fi
xl destroy "$guest"
say destroy $? "$(gone "$guest" && echo gone || echo present)"
say done
