"""Dom0's root over the network, fetched lazily: the first stage's side.

The root's squashfs layers are casync blob indexes in the initramfs (pinned: each names its
chunks by SHA-256). casync's `mkdev` turns each index into an NBD block device whose reads
fetch chunks on demand. casync's own HTTP helper gives up on a bad chunk (EBADMSG) and
retries only refused connections, for seconds, so it talks only to a front on 127.0.0.1:
a busybox httpd whose CGI fetches each chunk from the mirrors in turn, checks it against its
name, keeps it in a cache (RAM, or a local partition labelled XENKIT-CACHE that survives
reboots), fetches the next chunks ahead, and retries a mirror that is away for up to ten
minutes, saying so on the console. The front and its DHCP client run chrooted in /run, out
of static busybox: they must never read the root they serve.

The cache is laid out as a casync store and given to casync as an extra store, which it
reads before asking the front: a chunk fetched ahead, or kept from an earlier boot, costs no
request. Measured in the emulated PC's Dom0, one request through the front took 0.7 s even
for a chunk already cached (an exec of busybox alone 76 ms, a fork 36 ms).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from xenkit.errors import XenkitError
from xenkit.formats import elf

CACHE_LABEL = "XENKIT-CACHE"
FRONT_PORT = 3128
# Chunks fetched ahead of the one asked for, in the index's order. Measured on the emulated
# PC (Dom0 ready, seconds): 4 ahead 162 s; 8 ahead slower, the emulated CPU being the limit.
AHEAD = 4
# Where the first stage finds what the build pinned (the indexes and their chunk lists).
PINS = "netroot"
FRONT = "/run/xenkit/front"
# casync and its HTTP helper come out of Dom0's own tree (Debian's casync package).
CASYNC = ("usr/bin/casync", "usr/lib/casync/protocols/casync-http")
# Where the initramfs lists casync's files (CASYNC, their interpreter and libraries), which
# the first stage copies into the front's chroot, where casync runs.
PROGRAMS = "etc/xenkit/casync.files"
# Debian's multiarch library directories (amd64, arm64), where casync's libraries are.
TRIPLETS = ("x86_64-linux-gnu", "aarch64-linux-gnu")
LIB_DIRS = (
    *(f"{top}lib/{t}" for t in TRIPLETS for top in ("usr/", "")),
    "usr/lib64",
    "lib64",
    "usr/lib",
)
# Printed by the first stage and the front; tests and users grep for these.
ATTACHED = "xenkit: Dom0 root is lazy over HTTP"
DOWNLOADED = "xenkit: Dom0 root downloaded whole over HTTP"
CORRUPT = "is corrupt"
RETRYING = "retrying every 5 s"
FILLED = "xenkit: cache filled"


@dataclass(frozen=True)
class Net:
    """Dom0's root from squashfs layers (top first) fetched lazily over HTTP, cached on a
    partition labelled `cache` when the machine has one."""

    layers: tuple[str, ...]
    bridge: str = "xenbr0"
    cache: str = CACHE_LABEL
    mirrors: tuple[str, ...] = ()  # baked in; else from DHCP (boot file) or its server:8080
    fetch: str = "lazy"  # or "whole": every layer into RAM before Dom0 starts


def program_files(tree: Path, programs: tuple[str, ...] = CASYNC) -> dict[str, Path]:
    """(path under /, file in `tree`) for `programs`, their interpreter and every shared
    library they need, found in `tree`'s library directories."""
    found: dict[str, Path] = {}
    todo = list(programs)
    while todo:
        rel = todo.pop()
        if rel in found:
            continue
        path = _resolve(tree, rel)
        if path is None:
            raise XenkitError(f"Dom0's root has no {rel}: the casync package is incomplete")
        found[rel] = path
        needs = elf.needs(path.read_bytes(), rel)
        if needs.interpreter:
            todo.append(needs.interpreter.lstrip("/"))
        for lib in needs.libraries:
            hit = next((f"{d}/{lib}" for d in LIB_DIRS if _resolve(tree, f"{d}/{lib}")), None)
            if hit is None:
                raise XenkitError(f"{rel} needs {lib}, which Dom0's root does not have")
            todo.append(hit)
    return found


def casync_files(tree: Path) -> dict[str, bytes]:
    """casync's files (program_files) at their paths in the initramfs, and their list."""
    found = program_files(tree)
    files = {rel: path.read_bytes() for rel, path in found.items()}
    files[PROGRAMS] = "".join(f"{rel}\n" for rel in sorted(found)).encode()
    return files


def _resolve(tree: Path, rel: str) -> Path | None:
    """`rel` inside `tree`, following symlinks as the running system would (absolute links
    lead back into the tree, not to the host)."""
    parts = list(PurePosixPath(rel).parts)
    current = tree
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in ("/", "."):
            continue
        nxt = current / part if part != ".." else current.parent
        if nxt.is_symlink():
            hops += 1
            if hops > 40:
                return None
            target = PurePosixPath(str(nxt.readlink()))
            parts = list(target.parts) + parts
            current = tree if target.is_absolute() else current
            continue
        current = nxt
    return current if current.is_file() else None


def chunk_lists(indexes: dict[str, list[str]]) -> bytes:
    """The chunks the front fetches ahead in, every layer's in its own order."""
    return "".join(f"{c}\n" for ids in indexes.values() for c in ids).encode()


# The first stage of a network root, after HEAD (busybox, /proc, /sys, /dev, modules).
# A machine with several wired NICs uses the first with a link, as Dom0's autoconfig does.
STAGE = r"""
fail() { echo "xenkit: $*"; exec sh; }
mount -t tmpfs -o mode=0755 tmpfs /run
f=@FRONT@
mkdir -p $f/bin $f/www/cgi-bin $f/cache $f/dev $f/tmp $f/etc $f/proc /run/xenkit/tmp
cp /bin/busybox $f/bin/busybox
for a in sh wget timeout sha256sum gunzip awk cat mv rm mkdir rmdir sleep ip sync \
    udhcpc cut tr httpd wc ls renice; do
    ln -s busybox "$f/bin/$a"
done
mknod $f/dev/null c 1 3 && mknod $f/dev/console c 5 1 && mknod $f/dev/urandom c 1 9
cp /etc/front/* $f/bin/ && cp /@PINS@/chunks $f/chunks
mv $f/bin/front.cgi $f/www/cgi-bin/c
mirrors=@MIRRORS@
fetch=@FETCH@
for word in $(cat /proc/cmdline); do
    case "$word" in
        xenkit.mirror=*) mirrors=$(echo "${word#xenkit.mirror=}" | tr , ' ') ;;
        xenkit.fetch=lazy | xenkit.fetch=whole) fetch=${word#xenkit.fetch=} ;;
    esac
done

ip link set lo up
ip link add name @BRIDGE@ type bridge stp_state 0 forward_delay 0
nics=""
for n in /sys/class/net/*; do
    [ -e "$n/device" ] && [ ! -e "$n/wireless" ] || continue
    nics="$nics ${n##*/}"
    ip link set "${n##*/}" up
done
uplink=""
i=0
while [ -z "$uplink" ] && [ $i -lt 100 ]; do
    for nic in $nics; do
        [ "$(cat "/sys/class/net/$nic/carrier" 2>/dev/null)" = 1 ] && uplink=$nic && break
    done
    [ -n "$uplink" ] || { sleep 0.1; i=$((i + 1)); }
done
[ -n "$uplink" ] ||
    fail "no wired NIC with a link (found:${nics:- none}): Dom0's root comes over it"
ip link set "$uplink" master @BRIDGE@
ip link set @BRIDGE@ up
# The DHCP client lives on in the front's chroot and renews the lease for Dom0.
chroot $f /bin/udhcpc -i @BRIDGE@ -s /bin/dhcp.sh -t 10 -T 2 -n -p /tmp/udhcpc.pid \
    >/run/xenkit/dhcp.log 2>&1 || fail "no DHCP answer on $uplink (bridged as @BRIDGE@)"
. $f/etc/lease
if [ -z "$mirrors" ]; then
    case "$boot_file" in http://*) mirrors=$(echo "$boot_file" | tr , ' ') ;; esac
fi
[ -n "$mirrors" ] || mirrors="http://$serverid:8080/"
echo "$mirrors" | tr ' ' '\n' >$f/etc/mirrors

kept="in RAM"
i=0
while [ $i -lt 20 ]; do
    if cdev=$(findfs LABEL=@CACHE@ 2>/dev/null); then
        if mount -t ext4 "$cdev" $f/cache; then kept="on $cdev"; echo >/run/xenkit/fill; fi
        break
    fi
    sleep 0.1
    i=$((i + 1))
done
rm -rf $f/cache/.part.* $f/cache/.busy.*
# The cache is a casync store (PREFIX/ID.cacnk), every prefix made now rather than by a
# mkdir per chunk.
(cd $f/cache && mkdir -p $(cut -c 1-4 $f/chunks)) || fail "cannot lay out the cache"
chroot $f /bin/httpd -p 127.0.0.1:@PORT@ -h /www || fail "the chunk front did not start"

export TMPDIR=/run/xenkit/tmp CASYNC_PROTOCOL_PATH=/usr/lib/casync/protocols
export LD_LIBRARY_PATH=@LIBPATH@
if [ "$fetch" != whole ]; then
    # casync reads the layers chrooted in the front's directory: at the handover /run moves
    # under Dom0's root and the initramfs is emptied, and casync starts its HTTP helper only
    # at the first chunk its cache lacks, which may come after that (with a filled cache, it
    # does). Moved, not copied: 21 MiB of libraries.
    while read -r p; do
        mkdir -p "$f/${p%/*}" && mv "/$p" "$f/$p" || fail "cannot move casync's $p"
    done </@PROGRAMS@
    mkdir -p $f/@PINS@ $f/sys && cp /@PINS@/*.caibx $f/@PINS@/ &&
        mount -t sysfs sysfs $f/sys && mount -t proc proc $f/proc ||
        fail "cannot lay out casync's chroot"
fi
lower=""
n=0
started=$(cut -d ' ' -f 1 /proc/uptime)
for layer in @LAYERS@; do
    name=$(basename "$layer" .sqfs)
    log=/run/xenkit/casync-$name.log
    mkdir -p "/run/live/$name"
    if [ "$fetch" = whole ]; then
        # The whole layer into RAM first, as dracut's root=live:http:// does: one casync
        # stream per mirror (it checks every chunk), the front if no mirror gives it whole.
        img=/run/xenkit/$name.sqfs
        for m in $mirrors http://127.0.0.1:@PORT@/cgi-bin/c; do
            casync extract --store="${m%/}" "/@PINS@/$name.caibx" "$img" >>"$log" 2>&1 && break
            rm -f "$img"
        done
        [ -e "$img" ] || fail "no mirror gave the whole $name layer ($log)"
        rm -f /run/xenkit/fill  # nothing to fill: the root is all in RAM
        mount -t squashfs -o ro,loop "$img" "/run/live/$name" || fail "cannot mount $img"
    else
        dev=$(cat /sys/block/nbd$n/dev)
        [ -e $f/dev/nbd$n ] || mknod $f/dev/nbd$n b "${dev%:*}" "${dev#*:}"
        TMPDIR=/tmp chroot $f /usr/bin/casync mkdev --store=http://127.0.0.1:@PORT@/cgi-bin/c \
            --extra-store=/cache "/@PINS@/$name.caibx" /dev/nbd$n >"$log" 2>&1 &
        i=0
        until [ "$(cat /sys/block/nbd$n/size 2>/dev/null)" -gt 0 ] 2>/dev/null; do
            i=$((i + 1))
            [ $i -gt 6000 ] && fail "casync did not attach $name ($log)"
            sleep 0.1
        done
        mount -t squashfs -o ro /dev/nbd$n "/run/live/$name" ||
            fail "cannot mount $layer from /dev/nbd$n"
        n=$((n + 1))
    fi
    lower="$lower${lower:+:}/run/live/$name"
done
mkdir -p /run/live/rw
mount -t tmpfs -o mode=0755 tmpfs /run/live/rw
mkdir -p /run/live/rw/upper /run/live/rw/work /newroot
mount -t overlay overlay \
    -o "lowerdir=$lower,upperdir=/run/live/rw/upper,workdir=/run/live/rw/work" /newroot ||
    fail "cannot join the layers"
if [ "$fetch" = whole ]; then
    echo "@DOWNLOADED@ from $(echo $mirrors | tr ' ' ,): $(du -sm /run/xenkit/*.sqfs |
        awk '{ n += $1 } END { print n }') MiB in $(awk -v s="$started" '{ print int($1 - s) }' \
        /proc/uptime) s, address $ip on @BRIDGE@"
else
    echo "@ATTACHED@ from $(echo $mirrors | tr ' ' ,), address $ip on @BRIDGE@, cache $kept"
fi
mkdir -p /newroot/run
mount --move /run /newroot/run
"""

# What the DHCP hook in the front's chroot adds to Dom0's: the lease's server and boot file,
# for the first stage.
LEASE = """        printf 'ip=%s\\nserverid=%s\\nboot_file=%s\\n' "$ip" "$serverid" "$boot_file" \\
            >/etc/lease
"""

# What the CGI and the cache fill share. Chunks are kept as served (compressed), where a
# casync store keeps them (/cache/PREFIX/ID.cacnk), and checked by their name: the SHA-256
# of the uncompressed bytes.
FRONT_LIB = r"""#!/bin/sh
export PATH=/bin
say() { echo "xenkit: $*" >>/dev/console; }
mirrors() { tr '\n' ' ' </etc/mirrors; }
# fetch ID: the chunk in /cache, from the first mirror that has it whole, or fail after
# ten minutes of retries. Dom0 runs this for every chunk, and under emulation a program
# started costs more than the bytes it moves (an exec of busybox pages it in through a PV
# kernel): the mirrors are read with the shell's own `read` and the sum is cut with the
# shell (Debian's busybox wget has no timeout of its own, so `timeout` stays).
fetch() {
    rel=${1%${1#????}}/$1.cacnk  # where a store keeps it, here and on the mirrors
    [ -s "/cache/$rel" ] && return 0
    [ -d "/cache/${rel%/*}" ] || mkdir -p "/cache/${rel%/*}"
    t=/cache/.part.$$.$1
    tries=0
    while :; do
        while read -r m; do
            if timeout 60 wget -q -O "$t" "${m%/}/$rel" 2>/dev/null; then
                sum=$(gunzip -c "$t" 2>/dev/null | sha256sum)
                sum=${sum%% *}
                if [ "$sum" = "$1" ]; then
                    mv "$t" "/cache/$rel"
                    [ $tries = 0 ] || say "chunk $1 fetched from $m after $tries retries"
                    return 0
                fi
                say "chunk $1 from $m @CORRUPT@ (its content hashes to" \
                    "${sum:-nothing}): not used, trying the next mirror"
            fi
            rm -f "$t"
        done </etc/mirrors
        tries=$((tries + 1))
        if [ $tries -gt 120 ]; then
            say "chunk $1: no mirror had it for 10 minutes ($(mirrors)): giving up"
            return 1
        fi
        [ $((tries % 12)) = 1 ] &&
            say "chunk $1: no mirror answers ($(mirrors)): @RETRYING@, for up to 10 minutes"
        sleep 5
    done
}
# ahead ID: the next chunks in the index's order, one fetcher each (a directory as a lock).
ahead() {
    next=$(awk -v id="$1" -v n=@AHEAD@ 'f { print; if (--n == 0) exit } $0 == id { f = 1 }' \
        /chunks)
    for n in $next; do
        [ -s "/cache/${n%${n#????}}/$n.cacnk" ] && continue
        mkdir "/cache/.busy.$n" 2>/dev/null || continue
        fetch "$n"
        rmdir "/cache/.busy.$n"
    done
}
# wanted ID: the chunk casync asks for, waiting (a minute at most) for a fetch `ahead` has
# begun rather than fetching it twice: casync asks for the next chunk as soon as it has
# one, just after the previous answer set `ahead` on it.
wanted() {
    i=0
    while [ -d "/cache/.busy.$1" ] && [ $i -lt 600 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    fetch "$1"
}
# fill: every chunk into the cache partition, so the next boot needs no server at all.
fill() {
    renice 19 $$ >/dev/null 2>&1
    for n in $(cat /chunks); do fetch "$n" || return 1; done
    sync
    echo "$(wc -l </chunks)" >/cache/filled
    sync
    say "cache filled: $(wc -l </chunks) chunks"
}
"""

FRONT_CGI = r"""#!/bin/sh
. /bin/front.sh
id=${PATH_INFO##*/}
id=${id%.cacnk}
case "$id" in
    "" | *[!0-9a-f]*) printf 'Status: 400 Bad Request\r\nConnection: close\r\n\r\n'; exit 0 ;;
esac
# No Content-Length: busybox httpd ends a CGI's answer when the script closes it.
if wanted "$id"; then
    printf 'Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n'
    ahead "$id" </dev/null >/dev/null 2>&1 &
    exec cat "/cache/${id%${id#????}}/$id.cacnk"
else
    printf 'Status: 404 Not Found\r\nConnection: close\r\n\r\n'
fi
"""

FILL = "chroot @FRONT@ /bin/sh -c '. /bin/front.sh && fill' >/run/xenkit/fill.log 2>&1"


def front_files(udhcpc_script: str) -> dict[str, bytes]:
    """The front's scripts, under /etc/front in the initramfs; its DHCP hook is Dom0's
    (`udhcpc_script`) leaving the lease for the first stage."""
    resolv = ">/etc/resolv.conf\n"
    if resolv not in udhcpc_script:
        raise ValueError("the DHCP hook no longer writes /etc/resolv.conf")
    lib = FRONT_LIB.replace("@CORRUPT@", CORRUPT).replace("@RETRYING@", RETRYING)
    return {
        "etc/front/front.sh": lib.replace("@AHEAD@", str(AHEAD)).encode(),
        "etc/front/front.cgi": FRONT_CGI.encode(),
        "etc/front/dhcp.sh": udhcpc_script.replace(resolv, resolv + LEASE).encode(),
    }


def stage_script(net: Net, layers: tuple[str, ...]) -> str:
    mirrors = "'" + " ".join(net.mirrors) + "'"
    body = STAGE.replace("@LAYERS@", " ".join(layers)).replace("@MIRRORS@", mirrors)
    for key, value in (
        ("@FRONT@", FRONT),
        ("@PINS@", PINS),
        ("@PROGRAMS@", PROGRAMS),
        ("@BRIDGE@", net.bridge),
        ("@CACHE@", net.cache),
        ("@PORT@", str(FRONT_PORT)),
        ("@ATTACHED@", ATTACHED),
        ("@DOWNLOADED@", DOWNLOADED),
        ("@FETCH@", net.fetch),
        ("@LIBPATH@", ":".join(f"/{d}" for d in LIB_DIRS[: 2 * len(TRIPLETS)])),
    ):
        body = body.replace(key, value)
    return body
