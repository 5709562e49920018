#!/bin/sh
# A minimal pilot for the lab tests: on a site worker, start a startd that
# joins the VO pool, live until the time limit, then shut down cleanly.
# Usage: mini_pilot.sh COMMON_CONFIG VO_COLLECTOR SITE LIFETIME_SECONDS [ENTRY FACTORY FRONTEND GROUP]
set -eu
common=$1 collector=$2 site=$3 lifetime=$4
entry=${5:-none} factory=${6:-none} frontend=${7:-none} group=${8:-none}
to_die=$(( $(date +%s) + lifetime ))
here=$(pwd)
name="pilot_$$_${site}@lab"
mkdir -p "$here/pilot/log" "$here/pilot/spool" "$here/pilot/execute" "$here/pilot/lock" "$here/pilot/run"
cat > "$here/pilot/condor_config" <<CONFIG
LOCAL_DIR = $here/pilot
include : $common
COLLECTOR_HOST = $collector
DAEMON_LIST = MASTER, STARTD
MASTER_NAME = $name
STARTD_NAME = $name
IS_GLIDEIN = True
GLIDEIN_Site = "$site"
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
echo "pilot $name joining $collector"
# The outer starter's environment would make the inner daemons present its
# session ids to our collector; start them with a clean one.
exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$here" CONDOR_CONFIG="$here/pilot/condor_config" \
    timeout --preserve-status "$lifetime" condor_master -f
