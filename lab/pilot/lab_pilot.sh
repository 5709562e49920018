#!/bin/sh
# The lab's pilot: on a site worker, start a startd that joins the VO pool
# and advertises who sent it, live until its lifetime ends, then shut down
# cleanly. Everything comes from the environment the factory's submit
# description sets (UPDRAFT_*) and the entry's pilot attributes (LAB_*,
# GLIDEIN_Site). The full glidein lives in glidein/; this is the lab's own.
set -eu
: "${LAB_COMMON_CONFIG:?}" "${LAB_VO_COLLECTOR:?}" "${GLIDEIN_Site:?}"
lifetime=${LAB_PILOT_LIFETIME:-600}
entry=${UPDRAFT_ENTRY:-none} factory=${UPDRAFT_FACTORY:-none}
frontend=${UPDRAFT_FRONTEND:-none} group=${UPDRAFT_GROUP:-none}
to_die=$(( $(date +%s) + lifetime ))
here=$(pwd)
name="pilot_$$_${GLIDEIN_Site}@lab"
mkdir -p "$here/pilot/log" "$here/pilot/spool" "$here/pilot/execute" "$here/pilot/lock" "$here/pilot/run"
cat > "$here/pilot/condor_config" <<CONFIG
LOCAL_DIR = $here/pilot
include : $LAB_COMMON_CONFIG
COLLECTOR_HOST = $LAB_VO_COLLECTOR
DAEMON_LIST = MASTER, STARTD
MASTER_NAME = $name
STARTD_NAME = $name
IS_GLIDEIN = True
GLIDEIN_Site = "$GLIDEIN_Site"
GLIDEIN_Entry_Name = "$entry"
GLIDEIN_Factory = "$factory"
GLIDECLIENT_Name = "$frontend"
GLIDECLIENT_Group = "$group"
GLIDEIN_ToDie = $to_die
STARTD_ATTRS = \$(STARTD_ATTRS) IS_GLIDEIN GLIDEIN_Site GLIDEIN_Entry_Name GLIDEIN_Factory GLIDECLIENT_Name GLIDECLIENT_Group GLIDEIN_ToDie
NUM_CPUS = 1
MEMORY = 512
START = True
SUSPEND = False
PREEMPT = False
KILL = False
RunBenchmarks = False
BENCHMARKS_JOBLIST =
CONFIG
echo "pilot $name joining $LAB_VO_COLLECTOR"
# The outer starter's environment would make the inner daemons present its
# session ids to our collector; start them with a clean one.
exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$here" CONDOR_CONFIG="$here/pilot/condor_config" \
    timeout --preserve-status "$lifetime" condor_master -f
