#!/usr/bin/env bash
# Installs the host tools xenkit drives. Idempotent; needs root (or sudo).
# The Debian mirror is taken from this machine's own apt sources: xenkit never names a host.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

here=$(cd "$(dirname "$0")" && pwd)
mirror=$(python3 "$here/../src/xenkit/debian/aptsources.py") || exit 1

list=/etc/apt/sources.list.d/xenkit-backports.list
want="deb $mirror bookworm-backports main"
if [ "$(cat "$list" 2>/dev/null)" != "$want" ]; then
    echo "$want" | $SUDO tee "$list" >/dev/null
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# The package list is src/xenkit/core/hostdeps.py's table, which tests/core/test_hostdeps.py checks against
# what the code and tests really use.
deps="python3 $here/../src/xenkit/core/hostdeps.py"
$SUDO apt-get install -y -q --no-install-recommends -t bookworm-backports $($deps --backports)
$SUDO apt-get install -y -q --no-install-recommends $($deps)
