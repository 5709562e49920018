# shellcheck shell=sh disable=SC2034,SC2154  # the state is main.sh's; other parts read and set it
# Step args: the command line, then UPDRAFT_*, then the GLIDEIN_* pilot
# attributes, then the defaults; every value is checked before anything is
# fetched.
#
# It only defines functions (and their constants): glidein/README.md, "Layout".

usage_options='--manifest-url URL --manifest-sha256 HEX
 [--frontend-manifest-url URL --frontend-manifest-sha256 HEX] [--work-dir DIR]
 [--condor-dir DIR | --condor-tarball-url URL --condor-tarball-sha256 HEX]
 [--collector HOST:PORT] [--max-walltime S] [--max-job-time S] [--shutdown-margin S]
 [--spread S] [--max-idle S] [--idle-tail S] [--failure-sleep S]
 [--blackhole-jobs N] [--blackhole-window S] [--nodes N] [--node-launcher CMD]
 [--node-scratch DIR] [--filesystem-domain NAME] [--uid-domain NAME] [--dry-run]'

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
            --manifest-url | --manifest-sha256 | --frontend-manifest-url | --frontend-manifest-sha256 | \
            --condor-tarball-url | --condor-tarball-sha256 | --work-dir | --condor-dir | --collector | \
            --max-walltime | --max-job-time | --shutdown-margin | --spread | --max-idle | \
            --idle-tail | --failure-sleep | --blackhole-jobs | --blackhole-window | --nodes | --node-launcher | \
            --node-scratch | --filesystem-domain | --uid-domain)
                option_value "$_opt" $# "${1-}"
                _val=$1
                shift
                ;;
            *) fail args "unknown option: $_opt (usage: $usage_options)" ;;
        esac
        case $_opt in
            --manifest-url) manifest_url=$_val ;;
            --manifest-sha256) manifest_sha256=$_val ;;
            --frontend-manifest-url) frontend_manifest_url=$_val ;;
            --frontend-manifest-sha256) frontend_manifest_sha256=$_val ;;
            --condor-tarball-url) condor_tarball_url=$_val ;;
            --condor-tarball-sha256) condor_tarball_sha256=$_val ;;
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
            --blackhole-jobs) blackhole_jobs=$_val ;;
            --blackhole-window) blackhole_window=$_val ;;
            --nodes) nodes=$_val ;;
            --node-launcher) node_launcher=$_val ;;
            --node-scratch) node_scratch=$_val ;;
            --filesystem-domain) filesystem_domain=$_val ;;
            --uid-domain) uid_domain=$_val ;;
        esac
    done
}

apply_environment_fallbacks() {
    # Command line first, then UPDRAFT_*, then the GLIDEIN_* pilot attributes
    # an entry may set, then the default.
    : "${manifest_url:=$(first_set '' UPDRAFT_MANIFEST_URL GLIDEIN_Manifest_URL)}"
    : "${manifest_sha256:=$(first_set '' UPDRAFT_MANIFEST_SHA256 GLIDEIN_Manifest_SHA256)}"
    : "${frontend_manifest_url:=$(first_set '' UPDRAFT_FRONTEND_MANIFEST_URL)}"
    : "${frontend_manifest_sha256:=$(first_set '' UPDRAFT_FRONTEND_MANIFEST_SHA256)}"
    : "${condor_tarball_url:=$(first_set '' UPDRAFT_CONDOR_TARBALL_URL GLIDEIN_Condor_Tarball_URL)}"
    : "${condor_tarball_sha256:=$(first_set '' UPDRAFT_CONDOR_TARBALL_SHA256 GLIDEIN_Condor_Tarball_SHA256)}"
    : "${work_dir:=$(first_set "$(pwd)/updraft-glidein" UPDRAFT_WORK_DIR GLIDEIN_Work_Dir)}"
    : "${condor_dir:=$(first_set '' UPDRAFT_CONDOR_DIR GLIDEIN_Condor_Dir)}"
    : "${collector:=$(first_set '' UPDRAFT_COLLECTOR GLIDEIN_Collector)}"
    : "${max_walltime:=$(first_set '' UPDRAFT_MAX_WALLTIME GLIDEIN_Max_Walltime)}"
    : "${max_job_time:=$(first_set 0 UPDRAFT_MAX_JOB_TIME GLIDEIN_Max_Job_Time)}"
    : "${shutdown_margin:=$(first_set 300 UPDRAFT_SHUTDOWN_MARGIN GLIDEIN_Shutdown_Margin)}"
    : "${spread:=$(first_set 0 UPDRAFT_SPREAD GLIDEIN_Retire_Spread)}"
    : "${max_idle:=$(first_set 1200 UPDRAFT_MAX_IDLE GLIDEIN_Max_Idle)}"
    : "${idle_tail:=$(first_set 300 UPDRAFT_IDLE_TAIL GLIDEIN_Max_Tail)}"
    : "${blackhole_jobs:=$(first_set 0 UPDRAFT_BLACKHOLE_JOBS GLIDEIN_BlackHole_Jobs)}"
    : "${blackhole_window:=$(first_set 600 UPDRAFT_BLACKHOLE_WINDOW GLIDEIN_BlackHole_Window)}"
    : "${node_launcher:=$(first_set '' UPDRAFT_NODE_LAUNCHER GLIDEIN_Node_Launcher)}"
    : "${node_scratch:=$(first_set '' UPDRAFT_NODE_SCRATCH GLIDEIN_Node_Scratch)}"
    # The domains are the factory's to say (its entry ad announces them), so
    # no GLIDEIN_* pilot attribute can change them.
    : "${filesystem_domain:=$(first_set '' UPDRAFT_FILESYSTEM_DOMAIN)}"
    : "${uid_domain:=$(first_set '' UPDRAFT_UID_DOMAIN)}"
    resolve_nodes
    if [ "$(first_set 0 UPDRAFT_DRY_RUN)" = 1 ]; then
        dry_run=1
    fi
}

resolve_nodes() {
    # --nodes, else UPDRAFT_NODES / GLIDEIN_Nodes, else what the batch system
    # says it gave this job, else 1. nodes_origin names the source for errors.
    if [ -n "$nodes" ]; then
        nodes_origin=--nodes
        return
    fi
    for _name in UPDRAFT_NODES GLIDEIN_Nodes SLURM_JOB_NUM_NODES PBS_NUM_NODES; do
        nodes=$(first_set '' "$_name")
        if [ -n "$nodes" ]; then
            nodes_origin=$_name
            return
        fi
    done
    if [ -n "${PBS_NODEFILE:-}" ] && [ -r "$PBS_NODEFILE" ]; then
        # PBS lists a node once per core it gave: count distinct lines.
        nodes=$(sort -u "$PBS_NODEFILE" | grep -c . || true)
        nodes_origin="distinct lines of PBS_NODEFILE"
        return
    fi
    nodes=1
    nodes_origin=default
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

require_sha256() {
    # require_sha256 OPTION VALUE: 64 hex digits, either case.
    case $2 in
        *[!0-9a-fA-F]*) fail args "$1 must be 64 hex digits" ;;
    esac
    if [ ${#2} -ne 64 ]; then
        fail args "$1 must be 64 hex digits"
    fi
}

require_together() {
    # require_together OPTION1 VALUE1 OPTION2 VALUE2: both set or neither.
    if [ -n "$2" ] && [ -z "$4" ]; then
        fail args "$1 needs $3 (give both or neither)"
    fi
    if [ -z "$2" ] && [ -n "$4" ]; then
        fail args "$3 needs $1 (give both or neither)"
    fi
}

check_identity() {
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

check_blackhole_and_nodes() {
    case $blackhole_jobs in
        '' | *[!0-9]*) fail args "--blackhole-jobs must be a whole number of jobs, got '$blackhole_jobs'" ;;
    esac
    require_seconds --blackhole-window "$blackhole_window"
    if [ "$blackhole_jobs" -gt 0 ] && [ "$blackhole_window" -eq 0 ]; then
        fail args "--blackhole-window must be positive when --blackhole-jobs is set"
    fi
    case $nodes in
        '' | *[!0-9]* | 0) fail args "--nodes must be a positive whole number, got '$nodes' (from $nodes_origin)" ;;
    esac
    case $node_scratch in
        '' | /*) ;;
        *) fail args "--node-scratch must be an absolute path (a folder on each node's own disk), got '$node_scratch'" ;;
    esac
}

check_domain() {
    # check_domain OPTION VALUE: empty (HTCondor's default, the host name), or
    # a domain name: letters, digits, '.', '_', '-', starting with a letter or
    # digit. It is written into the startd's configuration as it is.
    case $2 in
        '') ;;
        [!A-Za-z0-9]* | *[!A-Za-z0-9._-]*) fail args "$1 must be a domain name (letters, digits, '.', '_', '-'), got '$2'" ;;
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
    require_sha256 --manifest-sha256 "$manifest_sha256"
    manifest_sha256=$(lowercase "$manifest_sha256")
    require_together --frontend-manifest-url "$frontend_manifest_url" \
        --frontend-manifest-sha256 "$frontend_manifest_sha256"
    if [ -n "$frontend_manifest_sha256" ]; then
        require_sha256 --frontend-manifest-sha256 "$frontend_manifest_sha256"
        frontend_manifest_sha256=$(lowercase "$frontend_manifest_sha256")
    fi
    require_together --condor-tarball-url "$condor_tarball_url" \
        --condor-tarball-sha256 "$condor_tarball_sha256"
    if [ -n "$condor_tarball_sha256" ]; then
        require_sha256 --condor-tarball-sha256 "$condor_tarball_sha256"
        condor_tarball_sha256=$(lowercase "$condor_tarball_sha256")
    fi
    check_blackhole_and_nodes
    check_domain --filesystem-domain "$filesystem_domain"
    check_domain --uid-domain "$uid_domain"
    check_identity
}

prepare_work_dir() {
    mkdir -p "$work_dir" || fail args "cannot create work dir $work_dir"
    work_dir=$(cd "$work_dir" && pwd)
    validation_file=$work_dir/validation.results
    : >"$validation_file"
    validation_timeout=$(first_set 600 UPDRAFT_VALIDATION_TIMEOUT)
}
