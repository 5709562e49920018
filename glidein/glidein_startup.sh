#!/bin/sh
# Updraft glidein: what a pilot job runs on a site's worker node.
#
# It fetches a manifest (trusted by its SHA-256, which comes from the submit
# description), fetches and verifies every file the manifest lists, runs the
# entry's then the frontend's validation scripts, computes when to stop
# accepting jobs and when to die, writes a startd configuration that joins the
# VO collector and advertises who sent the pilot, then runs condor_master until
# the die time. Whatever happens, it prints a report between marker lines on
# stdout (the factory reads it from the job's output). See glidein/README.md.
#
# Runs on a bare worker: POSIX sh (dash), coreutils, sha256sum, awk, sed,
# curl or wget. No Python, no bash.
# shellcheck disable=SC2016  # '$(NAME)' in single quotes is an HTCondor macro, written as is
set -eu

REPORT_BEGIN='=== UPDRAFT PILOT REPORT BEGIN ==='
REPORT_END='=== UPDRAFT PILOT REPORT END ==='
REPORT_VERSION=1
MANIFEST_KINDS='validate-entry validate-frontend condor-config file'

# ---------------------------------------------------------------------------
# State the report reads; every variable exists before the EXIT trap can run.
# ---------------------------------------------------------------------------
start_time=$(date +%s)
step=args
status=ok
failed_step=
reason=
dry_run=0
manifest_url=''
manifest_sha256=''
work_dir=''
condor_dir=''
collector=''
max_walltime=''
max_job_time=''
shutdown_margin=''
spread=''
max_idle=''
idle_tail=''
failure_sleep=''
retire_time=''
die_time=''
retire_clamped=no
glidein_name=''
condor_exit=''
validation_file=''
factory=${UPDRAFT_FACTORY:-} entry=${UPDRAFT_ENTRY:-}
frontend=${UPDRAFT_FRONTEND:-} group=${UPDRAFT_GROUP:-}
security_class=${UPDRAFT_SECURITY_CLASS:-}
credential_id=${UPDRAFT_CREDENTIAL_ID:-}
job_id=${UPDRAFT_JOB_ID:-}
condor_pid=''

log() {
    # Progress goes to stderr: stdout is kept for the report (and condor).
    printf 'updraft-glidein: %s\n' "$*" >&2
}

fail() {
    # fail STEP REASON: stop the pilot; the EXIT trap reports and sleeps.
    status=failed
    failed_step=$1
    reason=$2
    log "FAILED at $1: $2"
    exit 1
}

one_line() {
    # Report values are single lines: a newline would forge a key or a marker.
    printf '%s' "$1" | tr '\n\r' '  '
}

# ---------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------

usage_options='--manifest-url URL --manifest-sha256 HEX [--work-dir DIR] [--condor-dir DIR]
 [--collector HOST:PORT] [--max-walltime S] [--max-job-time S] [--shutdown-margin S]
 [--spread S] [--max-idle S] [--idle-tail S] [--failure-sleep S] [--dry-run]'

first_set() {
    # first_set DEFAULT VAR...: the value of the first set, non-empty VAR, else DEFAULT.
    _default=$1
    shift
    for _name in "$@"; do
        eval "_value=\${$_name-}"
        if [ -n "$_value" ]; then
            printf '%s' "$_value"
            return 0
        fi
    done
    printf '%s' "$_default"
}

apply_environment_fallbacks() {
    # Command line first, then UPDRAFT_*, then the GLIDEIN_* pilot attributes
    # an entry may set, then the default.
    : "${manifest_url:=$(first_set '' UPDRAFT_MANIFEST_URL GLIDEIN_Manifest_URL)}"
    : "${manifest_sha256:=$(first_set '' UPDRAFT_MANIFEST_SHA256 GLIDEIN_Manifest_SHA256)}"
    : "${work_dir:=$(first_set "$(pwd)/updraft-glidein" UPDRAFT_WORK_DIR GLIDEIN_Work_Dir)}"
    : "${condor_dir:=$(first_set '' UPDRAFT_CONDOR_DIR GLIDEIN_Condor_Dir)}"
    : "${collector:=$(first_set '' UPDRAFT_COLLECTOR GLIDEIN_Collector)}"
    : "${max_walltime:=$(first_set '' UPDRAFT_MAX_WALLTIME GLIDEIN_Max_Walltime)}"
    : "${max_job_time:=$(first_set 0 UPDRAFT_MAX_JOB_TIME GLIDEIN_Max_Job_Time)}"
    : "${shutdown_margin:=$(first_set 300 UPDRAFT_SHUTDOWN_MARGIN GLIDEIN_Shutdown_Margin)}"
    : "${spread:=$(first_set 0 UPDRAFT_SPREAD GLIDEIN_Retire_Spread)}"
    : "${max_idle:=$(first_set 1200 UPDRAFT_MAX_IDLE GLIDEIN_Max_Idle)}"
    : "${idle_tail:=$(first_set 300 UPDRAFT_IDLE_TAIL GLIDEIN_Max_Tail)}"
    if [ "$(first_set 0 UPDRAFT_DRY_RUN)" = 1 ]; then
        dry_run=1
    fi
}

set_failure_sleep_early() {
    # An argument error must also sleep (a misconfigured entry should not spin
    # through the site's queue), so the sleep is known before parsing.
    failure_sleep=$(first_set 600 UPDRAFT_FAILURE_SLEEP GLIDEIN_Failure_Sleep)
    case $failure_sleep in
        '' | *[!0-9]*) failure_sleep=600 ;;
    esac
}

option_value() {
    # option_value OPTION NEXT_ARG_COUNT [NEXT_ARG]: the value after an option.
    if [ "$2" -lt 1 ]; then
        fail args "option $1 needs a value"
    fi
    case $3 in
        --*) fail args "option $1 needs a value (got option $3)" ;;
    esac
}

parse_arguments() {
    while [ $# -gt 0 ]; do
        _opt=$1
        shift
        case $_opt in
            --dry-run) dry_run=1; continue ;;
            --*=*) set -- "${_opt#*=}" "$@"; _opt=${_opt%%=*} ;;
        esac
        case $_opt in
            --manifest-url | --manifest-sha256 | --work-dir | --condor-dir | --collector | \
            --max-walltime | --max-job-time | --shutdown-margin | --spread | --max-idle | \
            --idle-tail | --failure-sleep)
                option_value "$_opt" $# "${1-}"
                _val=$1
                shift
                ;;
            *) fail args "unknown option: $_opt (usage: $usage_options)" ;;
        esac
        case $_opt in
            --manifest-url) manifest_url=$_val ;;
            --manifest-sha256) manifest_sha256=$_val ;;
            --work-dir) work_dir=$_val ;;
            --condor-dir) condor_dir=$_val ;;
            --collector) collector=$_val ;;
            --max-walltime) max_walltime=$_val ;;
            --max-job-time) max_job_time=$_val ;;
            --shutdown-margin) shutdown_margin=$_val ;;
            --spread) spread=$_val ;;
            --max-idle) max_idle=$_val ;;
            --idle-tail) idle_tail=$_val ;;
            --failure-sleep) failure_sleep=$_val ;;
        esac
    done
}

require_value() {
    # require_value WHAT VALUE
    if [ -z "$2" ]; then
        fail args "missing required $1"
    fi
}

require_seconds() {
    # require_seconds OPTION VALUE: a whole, non-negative number of seconds.
    case $2 in
        '' | *[!0-9]*) fail args "$1 must be a whole number of seconds, got '$2'" ;;
    esac
}

check_arguments() {
    require_value "--manifest-url (or UPDRAFT_MANIFEST_URL)" "$manifest_url"
    require_value "--manifest-sha256 (or UPDRAFT_MANIFEST_SHA256)" "$manifest_sha256"
    require_value "--collector (or UPDRAFT_COLLECTOR)" "$collector"
    require_value "--max-walltime (or UPDRAFT_MAX_WALLTIME)" "$max_walltime"
    require_seconds --failure-sleep "$failure_sleep"
    require_seconds --max-walltime "$max_walltime"
    require_seconds --max-job-time "$max_job_time"
    require_seconds --shutdown-margin "$shutdown_margin"
    require_seconds --spread "$spread"
    require_seconds --max-idle "$max_idle"
    require_seconds --idle-tail "$idle_tail"
    case $manifest_sha256 in
        *[!0-9a-fA-F]*) fail args "--manifest-sha256 must be 64 hex digits" ;;
    esac
    if [ ${#manifest_sha256} -ne 64 ]; then
        fail args "--manifest-sha256 must be 64 hex digits"
    fi
    manifest_sha256=$(printf '%s' "$manifest_sha256" | tr 'A-F' 'a-f')
    # The factory always sets who the pilot is: without it the slot could be
    # neither matched by its frontend nor accounted by its factory.
    require_value "UPDRAFT_FACTORY" "$factory"
    require_value "UPDRAFT_ENTRY" "$entry"
    require_value "UPDRAFT_FRONTEND" "$frontend"
    require_value "UPDRAFT_GROUP" "$group"
    require_value "UPDRAFT_JOB_ID" "$job_id"
    case $job_id in
        *[!0-9.]* | .* | *. | *.*.*) bad_job_id=1 ;;
        *.*) bad_job_id=0 ;;
        *) bad_job_id=1 ;;
    esac
    if [ "$bad_job_id" = 1 ]; then
        fail args "UPDRAFT_JOB_ID must be cluster.proc, got '$job_id'"
    fi
}

# ---------------------------------------------------------------------------
# Fetching and verifying
# ---------------------------------------------------------------------------

sha256_of() {
    # Read from stdin so the file name never shows up (escaped) in the output.
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum <"$1" | awk '{print $1}'
    else
        shasum -a 256 <"$1" | awk '{print $1}'
    fi
}

fetch_url() {
    # fetch_url URL DEST: 0 on success. file:// is copied by hand because wget
    # does not know it (and tests should not depend on which tool is present).
    case $1 in
        file://*)
            _url_path=${1#file://}
            _url_path=${_url_path#localhost}
            cp -- "$_url_path" "$2" 2>/dev/null
            ;;
        http://* | https://*)
            if command -v curl >/dev/null 2>&1; then
                curl -fsSL --retry 2 --connect-timeout 30 --max-time 900 -o "$2" "$1"
            elif command -v wget >/dev/null 2>&1; then
                wget -q --tries=3 --timeout=60 -O "$2" "$1"
            else
                log "neither curl nor wget is installed"
                return 1
            fi
            ;;
        *)
            log "unsupported URL scheme: $1"
            return 1
            ;;
    esac
}

verify_sha256() {
    # verify_sha256 FILE EXPECTED WHAT
    _actual=$(sha256_of "$1")
    if [ "$_actual" != "$2" ]; then
        fail verify "SHA-256 mismatch for $3: expected $2, got $_actual"
    fi
}

fetch_manifest() {
    step=fetch
    if ! fetch_url "$manifest_url" "$work_dir/manifest"; then
        fail fetch "cannot fetch manifest $manifest_url"
    fi
    step=verify
    verify_sha256 "$work_dir/manifest" "$manifest_sha256" "manifest $manifest_url"
}

check_manifest_path() {
    # Listed paths stay inside the work dir: relative, no '..', plain characters.
    case $1 in
        '' | /* | *[!A-Za-z0-9._/-]*) return 1 ;;
    esac
    case /$1/ in
        */../*) return 1 ;;
    esac
}

parse_manifest_line() {
    # parse_manifest_line NUMBER LINE: append "sha path kind" to manifest.list.
    _number=$1
    set -f
    # shellcheck disable=SC2086  # splitting the line into fields is the point
    set -- $2
    set +f
    if [ $# -ne 3 ]; then
        fail verify "manifest line $_number: expected 'sha256 path kind', got $# fields"
    fi
    case $1 in
        *[!0-9a-f]*) fail verify "manifest line $_number: bad sha256 for $2" ;;
    esac
    if [ ${#1} -ne 64 ]; then
        fail verify "manifest line $_number: bad sha256 for $2"
    fi
    check_manifest_path "$2" || fail verify "manifest line $_number: path not allowed: $2"
    case " $MANIFEST_KINDS " in
        *" $3 "*) ;;
        *) fail verify "manifest line $_number: unknown kind '$3' for $2" ;;
    esac
    printf '%s %s %s\n' "$1" "$2" "$3" >>"$work_dir/manifest.list"
}

read_manifest() {
    step=verify
    : >"$work_dir/manifest.list"
    _n=0
    while IFS= read -r _line || [ -n "$_line" ]; do
        _n=$((_n + 1))
        _trimmed=$(printf '%s' "$_line" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
        case $_trimmed in
            '' | '#'*) continue ;;
        esac
        parse_manifest_line "$_n" "$_trimmed"
    done <"$work_dir/manifest"
}

fetch_listed_files() {
    # Listed files live next to the manifest: URL = manifest's folder + path.
    _base=${manifest_url%/*}
    while read -r _sha _path _kind; do
        mkdir -p "$(dirname "$work_dir/files/$_path")"
        step=fetch
        if ! fetch_url "$_base/$_path" "$work_dir/files/$_path"; then
            fail fetch "cannot fetch $_path from $_base/$_path"
        fi
        step=verify
        verify_sha256 "$work_dir/files/$_path" "$_sha" "$_path"
    done <"$work_dir/manifest.list"
}

# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------

validation_verdict() {
    # validation_verdict OUTPUT_FILE EXIT_STATUS: print "<kind> <message>".
    _v_line=$(grep '^UPDRAFT_VALIDATION[[:space:]]' "$1" | tail -n 1 || true)
    _v_kind=$(printf '%s\n' "$_v_line" | sed -n 's/.*[[:space:]]kind=\([A-Za-z]*\).*/\1/p')
    _v_message=$(printf '%s\n' "$_v_line" | sed -n 's/.*[[:space:]]message=//p')
    case $_v_kind in
        resources | network | config | corruption) ;;
        *) _v_kind=unknown ;;
    esac
    if [ -z "$_v_line" ]; then
        _v_message="exited $2 without an UPDRAFT_VALIDATION line"
    fi
    printf '%s %s' "$_v_kind" "$_v_message"
}

run_validation() {
    # run_validation PATH: run one script, append "path OK|kind message".
    _script=$work_dir/files/$1
    _out=$work_dir/validation/$(printf '%s' "$1" | tr '/' '_').out
    chmod +x "$_script"
    _rc=0
    # stdin from /dev/null: the script must not eat the manifest list we loop over.
    (cd "$work_dir" && run_bounded "$validation_timeout" "$_script") \
        </dev/null >"$_out" 2>&1 || _rc=$?
    if [ "$_rc" -eq 0 ]; then
        printf '%s OK\n' "$1" >>"$validation_file"
        log "validation $1: OK"
    else
        _verdict=$(validation_verdict "$_out" "$_rc")
        printf '%s %s\n' "$1" "$(one_line "$_verdict")" >>"$validation_file"
        log "validation $1: $_verdict"
    fi
}

run_bounded() {
    # run_bounded SECONDS CMD...: with coreutils' timeout when the node has it.
    _limit=$1
    shift
    if command -v timeout >/dev/null 2>&1; then
        timeout "$_limit" "$@"
    else
        "$@"
    fi
}

run_validations() {
    step=validate
    mkdir -p "$work_dir/validation"
    # The entry's checks describe the node; the frontend's assume a sane node.
    export UPDRAFT_WORK_DIR="$work_dir" UPDRAFT_FILES_DIR="$work_dir/files"
    for _wanted in validate-entry validate-frontend; do
        while read -r _sha _path _kind; do
            if [ "$_kind" = "$_wanted" ]; then
                run_validation "$_path"
            fi
        done <"$work_dir/manifest.list"
    done
    _first_failure=$(awk '$2 != "OK" {print; exit}' "$validation_file")
    if [ -n "$_first_failure" ]; then
        _failures=$(awk '$2 != "OK"' "$validation_file" | wc -l | tr -d ' ')
        fail validate "$_failures validation(s) failed; first: $_first_failure"
    fi
}

# ---------------------------------------------------------------------------
# Lifetime
# ---------------------------------------------------------------------------

random_up_to() {
    # random_up_to N: a whole number in [0, N].
    if [ "$1" -eq 0 ]; then
        echo 0
        return
    fi
    _r=$(od -An -N4 -tu4 /dev/urandom 2>/dev/null | tr -d ' \n' || true)
    case $_r in
        '' | *[!0-9]*)
            # No /dev/urandom: awk's time seed, mixed with the pid so pilots
            # started in the same second still differ.
            _r=$(awk -v pid=$$ 'BEGIN { srand(); srand(int(rand() * 1000000) + pid); print int(rand() * 4294967295) }')
            ;;
    esac
    echo $((_r % ($1 + 1)))
}

compute_lifetime() {
    step=lifetime
    die_time=$((start_time + max_walltime - shutdown_margin))
    if [ "$die_time" -le "$start_time" ]; then
        fail lifetime "--max-walltime $max_walltime leaves no time after --shutdown-margin $shutdown_margin"
    fi
    # Spread the retire times so a batch of pilots does not drain at once.
    retire_time=$((die_time - max_job_time - $(random_up_to "$spread")))
    if [ "$retire_time" -lt "$start_time" ]; then
        log "retire time $retire_time is before the start: clamped to the start (no job will start)"
        retire_time=$start_time
        retire_clamped=yes
    fi
}

# ---------------------------------------------------------------------------
# Condor configuration
# ---------------------------------------------------------------------------

classad_string() {
    # A ClassAd string literal: quote, escape backslashes and quotes.
    printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

check_config_value() {
    # check_config_value NAME VALUE: a line break would inject config lines.
    case $2 in
        *'
'* | *"$(printf '\r')"*) fail config "$1 contains a line break" ;;
    esac
}

detect_cpus() {
    # GLIDEIN_CPUS: a positive number, or unset/auto/node for what we may use.
    _cpus=${GLIDEIN_CPUS:-auto}
    case $_cpus in
        '' | auto | node | *[!0-9]* | 0)
            case $_cpus in
                '' | auto | node) ;;
                *) log "GLIDEIN_CPUS='$_cpus' is not a positive number; detecting" ;;
            esac
            _cpus=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
            ;;
    esac
    echo "$_cpus"
}

find_release_dir() {
    # The HTCondor install: --condor-dir, else where condor_master is on PATH.
    if [ -n "$condor_dir" ]; then
        printf '%s' "$condor_dir"
        return
    fi
    _master=$(command -v condor_master 2>/dev/null || true)
    if [ -n "$_master" ]; then
        dirname "$(dirname "$_master")"
    fi
}

start_expression() {
    # The entry's and the group's START, each optional, and never after retire.
    _expr=
    if [ -n "${GLIDEIN_Entry_Start:-}" ]; then
        _expr="($GLIDEIN_Entry_Start) && "
    fi
    if [ -n "${GLIDECLIENT_Group_Start:-}" ]; then
        _expr="$_expr($GLIDECLIENT_Group_Start) && "
    fi
    printf '%s(time() < GLIDEIN_ToRetire)' "$_expr"
}

slot_layout_config() {
    # slot_layout_config CPUS: GLIDEIN_Slots_Layout = partitionable (default) | fixed.
    case ${GLIDEIN_Slots_Layout:-partitionable} in
        partitionable)
            printf '%s\n' 'NUM_SLOTS_TYPE_1 = 1' 'SLOT_TYPE_1 = 100%' \
                'SLOT_TYPE_1_PARTITIONABLE = True'
            ;;
        fixed)
            # One single-core slot per CPU.
            printf 'NUM_SLOTS = %s\n' "$1"
            ;;
    esac
}

write_condor_config() {
    step=config
    for _pair in "factory:$factory" "entry:$entry" "frontend:$frontend" "group:$group" \
        "collector:$collector" "credential_id:$credential_id" \
        "GLIDEIN_Site:${GLIDEIN_Site:-}" "GLIDEIN_Schedd:${GLIDEIN_Schedd:-}" \
        "GLIDEIN_Name:${GLIDEIN_Name:-}" "GLIDEIN_Entry_Start:${GLIDEIN_Entry_Start:-}" \
        "GLIDECLIENT_Group_Start:${GLIDECLIENT_Group_Start:-}"; do
        check_config_value "${_pair%%:*}" "${_pair#*:}"
    done
    case ${GLIDEIN_Slots_Layout:-partitionable} in
        partitionable | fixed) ;;
        *) fail config "GLIDEIN_Slots_Layout must be partitionable or fixed, got '${GLIDEIN_Slots_Layout}'" ;;
    esac
    case ${GLIDEIN_MaxMemMBs:-} in
        *[!0-9]*) fail config "GLIDEIN_MaxMemMBs must be a whole number of MB, got '${GLIDEIN_MaxMemMBs}'" ;;
    esac
    _local=$work_dir/condor
    mkdir -p "$_local/log" "$_local/spool" "$_local/execute" "$_local/lock" "$_local/run"
    _release=$(find_release_dir)
    _cpus=$(detect_cpus)
    _slots=$(slot_layout_config "$_cpus")
    _cluster=${job_id%%.*}
    _proc=${job_id#*.}
    _site=${GLIDEIN_Site:-$entry}
    glidein_name="glidein_${_cluster}_${_proc}_$$@$(uname -n)"
    _attrs="IS_GLIDEIN GLIDEIN_Site GLIDEIN_Entry_Name GLIDEIN_Factory GLIDEIN_Name GLIDECLIENT_Name GLIDECLIENT_Group GLIDEIN_ClusterId GLIDEIN_ProcId GLIDEIN_CredentialIdentifier GLIDEIN_ToRetire GLIDEIN_ToDie GLIDEIN_Max_Walltime GLIDEIN_Max_Idle GLIDEIN_Max_Tail"
    {
        echo "# Written by glidein_startup.sh for $glidein_name; rewritten at every start."
        if [ -n "$_release" ]; then
            echo "RELEASE_DIR = $_release"
            echo 'BIN = $(RELEASE_DIR)/bin'
            echo 'SBIN = $(RELEASE_DIR)/sbin'
            echo 'LIB = $(RELEASE_DIR)/lib/condor'
            echo 'LIBEXEC = $(RELEASE_DIR)/libexec/condor'
            echo 'SHARE = $(RELEASE_DIR)/share/condor'
        fi
        echo "COLLECTOR_HOST = $collector"
        echo
        echo "# Configuration staged by the factory and the frontend, in manifest order."
        while read -r _sha _path _kind; do
            if [ "$_kind" = condor-config ]; then
                echo "include : $work_dir/files/$_path"
            fi
        done <"$work_dir/manifest.list"
        echo
        echo "# The pilot's own settings come last so no staged file can change"
        echo "# who the pilot says it is, where it writes, or when it leaves."
        echo "LOCAL_DIR = $_local"
        echo 'LOG = $(LOCAL_DIR)/log'
        echo 'SPOOL = $(LOCAL_DIR)/spool'
        echo 'EXECUTE = $(LOCAL_DIR)/execute'
        echo 'LOCK = $(LOCAL_DIR)/lock'
        echo 'RUN = $(LOCAL_DIR)/run'
        echo "STARTD_HISTORY = $_local/log/startd_history"
        echo 'DAEMON_LIST = MASTER, STARTD'
        echo "MASTER_NAME = $glidein_name"
        echo "STARTD_NAME = $glidein_name"
        echo 'IS_GLIDEIN = True'
        echo "GLIDEIN_Site = $(classad_string "$_site")"
        echo "GLIDEIN_Entry_Name = $(classad_string "$entry")"
        echo "GLIDEIN_Factory = $(classad_string "$factory")"
        echo "GLIDEIN_Name = $(classad_string "${GLIDEIN_Name:-$factory}")"
        echo "GLIDECLIENT_Name = $(classad_string "$frontend")"
        echo "GLIDECLIENT_Group = $(classad_string "$group")"
        if [ -n "${GLIDEIN_Schedd:-}" ]; then
            echo "GLIDEIN_Schedd = $(classad_string "$GLIDEIN_Schedd")"
            _attrs="$_attrs GLIDEIN_Schedd"
        fi
        echo "GLIDEIN_ClusterId = $_cluster"
        echo "GLIDEIN_ProcId = $_proc"
        # The credential's id only: its content never leaves the sandbox.
        echo "GLIDEIN_CredentialIdentifier = $(classad_string "$credential_id")"
        echo "GLIDEIN_ToRetire = $retire_time"
        echo "GLIDEIN_ToDie = $die_time"
        echo "GLIDEIN_Max_Walltime = $max_walltime"
        echo "GLIDEIN_Max_Idle = $max_idle"
        echo "GLIDEIN_Max_Tail = $idle_tail"
        echo "STARTD_ATTRS = \$(STARTD_ATTRS) $_attrs"
        echo
        echo "NUM_CPUS = $_cpus"
        if [ -n "${GLIDEIN_MaxMemMBs:-}" ]; then
            echo "MEMORY = $GLIDEIN_MaxMemMBs"
        fi
        printf '%s\n' "$_slots"
        echo
        echo "START = $(start_expression)"
        echo 'SUSPEND = False'
        echo 'PREEMPT = False'
        echo 'KILL = False'
        echo 'WANT_SUSPEND = False'
        echo 'WANT_VACATE = False'
        echo '# Never claimed: nobody wants this pilot; leave after max-idle.'
        echo "STARTD_NOCLAIM_SHUTDOWN = $max_idle"
        echo '# Idle and retired, or idle for the tail after having run a job: leave.'
        echo 'STARTD.DAEMON_SHUTDOWN = State == "Unclaimed" && Activity == "Idle" && ((time() > GLIDEIN_ToRetire) || (TotalTimeClaimedBusy =!= undefined && (time() - EnteredCurrentActivity) > GLIDEIN_Max_Tail))'
        echo '# The master has nothing to do once its startd has gone.'
        echo 'MASTER.DAEMON_SHUTDOWN = STARTD_StartTime =?= 0'
        echo '# Benchmarks would delay the first match by minutes.'
        echo 'RunBenchmarks = False'
        echo 'BENCHMARKS_JOBLIST ='
    } >"$_local/condor_config"
    log "wrote $_local/condor_config"
}

# ---------------------------------------------------------------------------
# Running condor
# ---------------------------------------------------------------------------

forward_signal() {
    # The batch system asks us to stop: ask condor_master to shut down
    # gracefully and let the EXIT trap report once it is gone.
    if [ -n "$condor_pid" ]; then
        kill -TERM "$condor_pid" 2>/dev/null || true
        wait "$condor_pid" 2>/dev/null || true
    fi
    fail "$step" "stopped by signal $1"
}

run_condor() {
    step=condor
    _release=$(find_release_dir)
    if [ -z "$_release" ] || [ ! -x "$_release/sbin/condor_master" ]; then
        fail condor "condor_master not found (pass --condor-dir)"
    fi
    _left=$((die_time - $(date +%s)))
    if [ "$_left" -le 0 ]; then
        fail condor "die time passed before condor could start"
    fi
    log "starting condor_master for $glidein_name, joining $collector until $die_time"
    trap 'forward_signal TERM' TERM
    trap 'forward_signal INT' INT
    trap 'forward_signal HUP' HUP
    # env -i: the outer starter's environment would make the inner daemons
    # present its session ids to our collector. timeout sends TERM (graceful
    # shutdown) at the die time and KILL after the shutdown margin.
    env -i PATH="$_release/sbin:$_release/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        HOME="$work_dir" CONDOR_CONFIG="$work_dir/condor/condor_config" \
        timeout --preserve-status --kill-after="$shutdown_margin" "$_left" \
        "$_release/sbin/condor_master" -f &
    condor_pid=$!
    condor_exit=0
    wait "$condor_pid" || condor_exit=$?
    condor_pid=
    if [ "$condor_exit" -ne 0 ] && [ "$(date +%s)" -lt "$die_time" ]; then
        fail condor "condor_master exited with status $condor_exit"
    fi
}

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

count_jobs() {
    # jobs_run and busy_seconds from the startd history (one job ad per
    # "***" banner); else count job starts in the StartLog (busy unknown: 0).
    _history=$work_dir/condor/log/startd_history
    _startlog=$work_dir/condor/log/StartLog
    if [ -n "$work_dir" ] && [ -s "$_history" ]; then
        awk -F ' = ' '
            /^\*\*\*/ {
                jobs++
                if (duration > 0) busy += duration
                else if (done > 0 && started > 0 && done > started) busy += done - started
                else if (wall > 0) busy += wall
                duration = done = started = wall = 0
                next
            }
            $1 == "JobDuration" { duration = int($2) }
            $1 == "CompletionDate" { done = int($2) }
            $1 == "JobCurrentStartDate" { started = int($2) }
            $1 == "RemoteWallClockTime" { wall = int($2) }
            END { printf "%d %d\n", jobs, busy }
        ' "$_history"
    elif [ -n "$work_dir" ] && [ -s "$_startlog" ]; then
        printf '%s 0\n' "$(grep -c 'Changing activity: Idle -> Busy' "$_startlog" || true)"
    else
        echo '0 0'
    fi
}

print_report() {
    _end=$(date +%s)
    _jobs=$(count_jobs 2>/dev/null || echo '0 0')
    echo "$REPORT_BEGIN"
    printf 'report_version=%s\n' "$REPORT_VERSION"
    printf 'status=%s\n' "$status"
    printf 'failed_step=%s\n' "$failed_step"
    printf 'reason=%s\n' "$(one_line "$reason")"
    printf 'factory=%s\n' "$(one_line "$factory")"
    printf 'entry=%s\n' "$(one_line "$entry")"
    printf 'frontend=%s\n' "$(one_line "$frontend")"
    printf 'group=%s\n' "$(one_line "$group")"
    printf 'security_class=%s\n' "$(one_line "$security_class")"
    printf 'job_id=%s\n' "$(one_line "$job_id")"
    printf 'credential_id=%s\n' "$(one_line "$credential_id")"
    printf 'glidein_name=%s\n' "$(one_line "$glidein_name")"
    printf 'host=%s\n' "$(uname -n)"
    printf 'dry_run=%s\n' "$dry_run"
    printf 'start_time=%s\n' "$start_time"
    printf 'end_time=%s\n' "$_end"
    printf 'lifetime=%s\n' "$((_end - start_time))"
    printf 'retire_time=%s\n' "$retire_time"
    printf 'die_time=%s\n' "$die_time"
    printf 'retire_clamped=%s\n' "$retire_clamped"
    printf 'condor_exit=%s\n' "$condor_exit"
    if [ -n "$validation_file" ] && [ -f "$validation_file" ]; then
        awk '{ printf "validation.%d=%s\n", NR, $0 }' "$validation_file"
    fi
    printf 'jobs_run=%s\n' "${_jobs% *}"
    printf 'busy_seconds=%s\n' "${_jobs#* }"
    echo "$REPORT_END"
}

on_exit() {
    _rc=$?
    trap - EXIT TERM INT HUP
    set +e
    if [ "$_rc" -ne 0 ] && [ "$status" != failed ]; then
        # A command failed under set -e without calling fail.
        status=failed
        failed_step=$step
        reason="unexpected error (exit status $_rc) during $step"
    fi
    print_report
    if [ "$status" = failed ]; then
        # A broken node must not eat the site's queue pilot after pilot.
        if [ "${failure_sleep:-0}" -gt 0 ] 2>/dev/null; then
            log "sleeping $failure_sleep s before exiting"
            sleep "$failure_sleep"
        fi
        exit 1
    fi
    exit 0
}

main() {
    trap on_exit EXIT
    set_failure_sleep_early
    parse_arguments "$@"
    apply_environment_fallbacks
    check_arguments
    mkdir -p "$work_dir" || fail args "cannot create work dir $work_dir"
    work_dir=$(cd "$work_dir" && pwd)
    validation_file=$work_dir/validation.results
    : >"$validation_file"
    validation_timeout=$(first_set 600 UPDRAFT_VALIDATION_TIMEOUT)
    fetch_manifest
    read_manifest
    fetch_listed_files
    run_validations
    compute_lifetime
    write_condor_config
    if [ "$dry_run" = 1 ]; then
        step=finished
        log "dry run: not starting condor"
        return 0
    fi
    run_condor
    step=finished
}

main "$@"
