#!/bin/sh
# Entry validation shipped with Updraft: is this worker usable at all?
# Fails with a known kind (see glidein/README.md, "Validation scripts") when
# the pilot's work dir is not writable or has too little free space, or when
# a tool the glidein needs is missing. UPDRAFT_MIN_DISK_MB sets the space
# needed (default 1024 MB).
set -u
min_mb=${UPDRAFT_MIN_DISK_MB:-1024}
work=${UPDRAFT_WORK_DIR:-$(pwd)}

verdict() {
    echo "UPDRAFT_VALIDATION kind=$1 message=$2"
    exit 1
}

probe=$work/.updraft-write-probe.$$
if ! : >"$probe" 2>/dev/null; then
    verdict resources "work dir $work is not writable"
fi
rm -f "$probe"

free_kb=$(df -Pk "$work" 2>/dev/null | awk 'NR == 2 { print $4 }')
case $free_kb in
    '' | *[!0-9]*) verdict resources "cannot read the free space of $work" ;;
esac
if [ $((free_kb / 1024)) -lt "$min_mb" ]; then
    verdict resources "only $((free_kb / 1024)) MB free in $work, need $min_mb MB"
fi

for tool in awk sed sha256sum tar timeout; do
    command -v "$tool" >/dev/null 2>&1 || verdict config "$tool is not installed"
done
echo "worker OK: $((free_kb / 1024)) MB free in $work"
