#!/bin/sh
# Updraft glidein: what a pilot job runs on a site's worker node.
#
# It fetches the factory's manifest and, optionally, the frontend's (each
# trusted by its SHA-256, which comes from the submit description), fetches
# and verifies every file they list, optionally an HTCondor tarball, runs the
# entry's then the frontend's validation scripts, unpacks the tarball,
# computes when to stop accepting jobs and when to die, writes a startd
# configuration that joins the VO collector and advertises who sent the
# pilot, then runs condor_master until the die time: once, or once on each
# node of a multi-node allocation. Whatever happens, it prints a report
# between marker lines on stdout (the factory reads it from the job's
# output). See glidein/README.md.
#
# Runs on a bare worker: POSIX sh (dash), coreutils, sha256sum, awk, sed,
# tar, curl or wget. No Python, no bash.
# shellcheck disable=SC2016  # '$(NAME)' in single quotes is an HTCondor macro, written as is
set -eu

REPORT_BEGIN='=== UPDRAFT PILOT REPORT BEGIN ==='
REPORT_END='=== UPDRAFT PILOT REPORT END ==='
REPORT_VERSION=2
MANIFEST_KINDS='validate-entry validate-frontend condor-config file'
# Where each manifest's files land under WORK_DIR/files, in the order they
# are validated and included: the factory's (entry) first, then the frontend's.
MANIFEST_ORIGINS='entry frontend'

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
frontend_manifest_url=''
frontend_manifest_sha256=''
condor_tarball_url=''
condor_tarball_sha256=''
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
blackhole_jobs=''
blackhole_window=''
nodes=''
nodes_origin=''
node_launcher=''
retire_time=''
die_time=''
retire_clamped=no
glidein_name=''
condor_exit=''
condor_source=''
release_dir=''
tarball_release=''
cpus=''
validation_file=''
factory=${UPDRAFT_FACTORY:-} entry=${UPDRAFT_ENTRY:-}
frontend=${UPDRAFT_FRONTEND:-} group=${UPDRAFT_GROUP:-}
security_class=${UPDRAFT_SECURITY_CLASS:-}
credential_id=${UPDRAFT_CREDENTIAL_ID:-}
# The pilot token's file name in the sandbox (sent encrypted by the factory);
# empty when the pool admits pilots without one.
pilot_token=${UPDRAFT_PILOT_TOKEN:-}
pilot_token_dir=''
start_dir=$(pwd)
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

usage_options='--manifest-url URL --manifest-sha256 HEX
 [--frontend-manifest-url URL --frontend-manifest-sha256 HEX] [--work-dir DIR]
 [--condor-dir DIR | --condor-tarball-url URL --condor-tarball-sha256 HEX]
 [--collector HOST:PORT] [--max-walltime S] [--max-job-time S] [--shutdown-margin S]
 [--spread S] [--max-idle S] [--idle-tail S] [--failure-sleep S]
 [--blackhole-jobs N] [--blackhole-window S] [--nodes N] [--node-launcher CMD] [--dry-run]'

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
            --idle-tail | --failure-sleep | --blackhole-jobs | --blackhole-window | --nodes | --node-launcher)
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

require_sha256() {
    # require_sha256 OPTION VALUE: 64 hex digits, either case.
    case $2 in
        *[!0-9a-fA-F]*) fail args "$1 must be 64 hex digits" ;;
    esac
    if [ ${#2} -ne 64 ]; then
        fail args "$1 must be 64 hex digits"
    fi
}

lowercase() {
    printf '%s' "$1" | tr 'A-F' 'a-f'
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
    check_identity
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

manifest_name() {
    # manifest_name ORIGIN: how reasons name a manifest.
    case $1 in
        entry) printf 'factory manifest' ;;
        frontend) printf 'frontend manifest' ;;
    esac
}

manifest_kinds() {
    # manifest_kinds ORIGIN: the kinds its manifest may list. Each side
    # validates only what it knows about: the factory its entry's nodes, the
    # frontend its VO's needs.
    case $1 in
        entry) printf 'validate-entry condor-config file' ;;
        frontend) printf 'validate-frontend condor-config file' ;;
    esac
}

kind_home() {
    # kind_home KIND: which manifest a validation kind belongs in.
    case $1 in
        validate-entry) printf "the factory's manifest" ;;
        validate-frontend) printf "the frontend's manifest" ;;
    esac
}

fetch_manifest() {
    # fetch_manifest ORIGIN URL SHA256: download, check and parse one manifest.
    _origin=$1
    step=fetch
    if ! fetch_url "$2" "$work_dir/manifest.$_origin"; then
        fail fetch "cannot fetch $(manifest_name "$_origin") $2"
    fi
    step=verify
    verify_sha256 "$work_dir/manifest.$_origin" "$3" "$(manifest_name "$_origin") $2"
    read_manifest "$_origin"
}

fetch_manifests() {
    # An empty list stands for the frontend manifest a pilot was not given.
    : >"$work_dir/manifest.frontend.list"
    fetch_manifest entry "$manifest_url" "$manifest_sha256"
    if [ -n "$frontend_manifest_url" ]; then
        fetch_manifest frontend "$frontend_manifest_url" "$frontend_manifest_sha256"
    fi
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
    # parse_manifest_line ORIGIN NUMBER LINE: append "sha path kind" to manifest.ORIGIN.list.
    _origin=$1
    _where="$(manifest_name "$1") line $2"
    set -f
    # shellcheck disable=SC2086  # splitting the line into fields is the point
    set -- $3
    set +f
    if [ $# -ne 3 ]; then
        fail verify "$_where: expected 'sha256 path kind', got $# fields"
    fi
    case $1 in
        *[!0-9a-f]*) fail verify "$_where: bad sha256 for $2" ;;
    esac
    if [ ${#1} -ne 64 ]; then
        fail verify "$_where: bad sha256 for $2"
    fi
    check_manifest_path "$2" || fail verify "$_where: path not allowed: $2"
    case " $(manifest_kinds "$_origin") " in
        *" $3 "*) ;;
        *)
            case " $MANIFEST_KINDS " in
                *" $3 "*) fail verify "$_where: kind $3 belongs in $(kind_home "$3")" ;;
                *) fail verify "$_where: unknown kind '$3' for $2" ;;
            esac
            ;;
    esac
    printf '%s %s %s\n' "$1" "$2" "$3" >>"$work_dir/manifest.$_origin.list"
}

read_manifest() {
    # read_manifest ORIGIN
    step=verify
    : >"$work_dir/manifest.$1.list"
    _n=0
    while IFS= read -r _line || [ -n "$_line" ]; do
        _n=$((_n + 1))
        _trimmed=$(printf '%s' "$_line" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
        case $_trimmed in
            '' | '#'*) continue ;;
        esac
        parse_manifest_line "$1" "$_n" "$_trimmed"
    done <"$work_dir/manifest.$1"
}

fetch_listed_files() {
    # fetch_listed_files ORIGIN MANIFEST_URL: each file lives next to its own
    # manifest (URL = manifest's folder + path) and lands in WORK_DIR/files/ORIGIN.
    _base=${2%/*}
    _what=$(manifest_name "$1")
    while read -r _sha _path _kind; do
        _dest=$work_dir/files/$1/$_path
        mkdir -p "$(dirname "$_dest")"
        step=fetch
        if ! fetch_url "$_base/$_path" "$_dest"; then
            fail fetch "cannot fetch $_path ($_what) from $_base/$_path"
        fi
        step=verify
        verify_sha256 "$_dest" "$_sha" "$_path ($_what)"
    done <"$work_dir/manifest.$1.list"
}

fetch_all_listed_files() {
    fetch_listed_files entry "$manifest_url"
    if [ -n "$frontend_manifest_url" ]; then
        fetch_listed_files frontend "$frontend_manifest_url"
    fi
}

wants_tarball() {
    # The tarball counts only when no --condor-dir overrides it.
    [ -n "$condor_tarball_url" ] && [ -z "$condor_dir" ]
}

fetch_condor_tarball() {
    if [ -z "$condor_tarball_url" ]; then
        return 0
    fi
    if ! wants_tarball; then
        log "--condor-dir $condor_dir wins over --condor-tarball-url: not fetching the tarball"
        return 0
    fi
    step=fetch
    if ! fetch_url "$condor_tarball_url" "$work_dir/condor-tarball"; then
        fail fetch "cannot fetch the condor tarball $condor_tarball_url"
    fi
    step=verify
    verify_sha256 "$work_dir/condor-tarball" "$condor_tarball_sha256" "condor tarball $condor_tarball_url"
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
    # run_validation PATH: run one script (PATH under WORK_DIR/files), append
    # "path OK|kind message".
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
    for _origin in $MANIFEST_ORIGINS; do
        while read -r _sha _path _kind; do
            case $_kind in
                validate-*) run_validation "$_origin/$_path" ;;
            esac
        done <"$work_dir/manifest.$_origin.list"
    done
    _first_failure=$(awk '$2 != "OK" {print; exit}' "$validation_file")
    if [ -n "$_first_failure" ]; then
        _failures=$(awk '$2 != "OK"' "$validation_file" | wc -l | tr -d ' ')
        fail validate "$_failures validation(s) failed; first: $_first_failure"
    fi
}

# ---------------------------------------------------------------------------
# Installing HTCondor from the tarball
# ---------------------------------------------------------------------------

tar_compression_flag() {
    # tar_compression_flag FILE: z, J, j or nothing, from the file's first
    # bytes (not its name: the URL need not end in .tar.gz).
    _magic=$(od -An -tx1 -N6 "$1" 2>/dev/null | tr -d ' \n')
    case $_magic in
        1f8b*) printf z ;;
        fd377a585a00) printf J ;;
        425a68*) printf j ;;
    esac
}

check_tarball_members() {
    # check_tarball_members TARBALL FLAG: refuse members that would land
    # outside the release dir (absolute or with a '..' component) before
    # anything is unpacked.
    _members=$work_dir/condor-tarball.members
    if ! tar "-t${2}f" "$1" >"$_members" 2>/dev/null; then
        fail install "cannot list the condor tarball $condor_tarball_url (not a tar archive?)"
    fi
    _bad=$(awk '/^\// { print; exit } index("/" $0 "/", "/../") { print; exit }' "$_members")
    if [ -n "$_bad" ]; then
        fail install "condor tarball member would escape the release dir: $_bad"
    fi
}

locate_unpacked_release() {
    # locate_unpacked_release DIR: sets tarball_release to DIR or its one
    # subdirectory that holds sbin/condor_master (tarballs usually wrap
    # everything in condor-<version>-<platform>/).
    tarball_release=
    if [ -f "$1/sbin/condor_master" ]; then
        tarball_release=$1
        return
    fi
    _candidates=0
    for _dir in "$1"/*/; do
        if [ -f "${_dir}sbin/condor_master" ]; then
            _candidates=$((_candidates + 1))
            tarball_release=${_dir%/}
        fi
    done
    if [ "$_candidates" -eq 0 ]; then
        fail install "no sbin/condor_master in the condor tarball (looked at the top and one directory down)"
    fi
    if [ "$_candidates" -gt 1 ]; then
        tarball_release=
        fail install "the condor tarball holds $_candidates directories with sbin/condor_master; expected one"
    fi
}

install_condor() {
    # Unpack the tarball into WORK_DIR/condor-release; --condor-dir wins.
    if ! wants_tarball; then
        return 0
    fi
    step=install
    _tarball=$work_dir/condor-tarball
    _flag=$(tar_compression_flag "$_tarball")
    check_tarball_members "$_tarball" "$_flag"
    _into=$work_dir/condor-release
    rm -rf "$_into"
    mkdir -p "$_into"
    if ! (cd "$_into" && tar "-x${_flag}f" "$_tarball") >&2; then
        fail install "cannot unpack the condor tarball $condor_tarball_url"
    fi
    locate_unpacked_release "$_into"
    if [ ! -x "$tarball_release/sbin/condor_master" ]; then
        fail install "sbin/condor_master in the condor tarball is not executable"
    fi
    # The unpacked release is all we need; the sandbox is often small.
    rm -f "$_tarball" "$work_dir/condor-tarball.members"
    log "installed condor from the tarball in $tarball_release"
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

resolve_release() {
    # The HTCondor install, in order: --condor-dir, the unpacked tarball,
    # the install that holds condor_master on PATH.
    if [ -n "$condor_dir" ]; then
        release_dir=$condor_dir
        condor_source=condor-dir
        return
    fi
    if [ -n "$tarball_release" ]; then
        release_dir=$tarball_release
        condor_source=tarball
        return
    fi
    _master=$(command -v condor_master 2>/dev/null || true)
    if [ -n "$_master" ]; then
        release_dir=$(dirname "$(dirname "$_master")")
        condor_source=path
    fi
}

start_expression() {
    # The entry's and the group's START, each optional, never after retire,
    # and never on a node found to be a black hole.
    _expr=
    if [ -n "${GLIDEIN_Entry_Start:-}" ]; then
        _expr="($GLIDEIN_Entry_Start) && "
    fi
    if [ -n "${GLIDECLIENT_Group_Start:-}" ]; then
        _expr="$_expr($GLIDECLIENT_Group_Start) && "
    fi
    printf '%s(time() < GLIDEIN_ToRetire)' "$_expr"
    if [ "$blackhole_jobs" -gt 0 ]; then
        printf ' && (GLIDEIN_BlackHole =!= True)'
    fi
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

nothing_runs_expression() {
    # nothing_runs_expression CPUS: true in a slot ad when no job runs on the
    # whole startd. DAEMON_SHUTDOWN is evaluated in every slot's ad, and the
    # partitionable slot itself stays Unclaimed while its dynamic slots run
    # jobs, so its own State says nothing: count its children instead. Fixed
    # slots see each other's State through STARTD_SLOT_ATTRS.
    case ${GLIDEIN_Slots_Layout:-partitionable} in
        partitionable)
            printf '(PartitionableSlot =?= True && NumDynamicSlots =?= 0)'
            ;;
        fixed)
            _expr='(State =!= "Claimed")'
            _slot=1
            while [ "$_slot" -le "$1" ]; do
                _expr="$_expr && (slot${_slot}_State =!= \"Claimed\")"
                _slot=$((_slot + 1))
            done
            printf '%s' "$_expr"
            ;;
    esac
}

blackhole_config() {
    # blackhole_config CPUS: stop matching at once when jobs start too fast,
    # and leave as soon as nothing runs. RecentJobStarts counts the jobs the
    # whole startd started in HTCondor's "recent" window, which the startd
    # fixes at 20 minutes (STATISTICS_WINDOW_SECONDS does not change it), and
    # is published in every slot ad. The exact --blackhole-window check runs
    # on the startd history once condor has exited (step blackhole).
    echo "GLIDEIN_BlackHole_Jobs = $blackhole_jobs"
    echo "GLIDEIN_BlackHole_Window = $blackhole_window"
    echo "GLIDEIN_BlackHole = (RecentJobStarts =!= undefined) && (RecentJobStarts > $blackhole_jobs)"
}

nothing_runs_config() {
    # nothing_runs_config CPUS: GLIDEIN_NothingRuns, for the shutdown rules.
    echo "GLIDEIN_NothingRuns = $(nothing_runs_expression "$1")"
    if [ "${GLIDEIN_Slots_Layout:-partitionable}" = fixed ]; then
        echo 'STARTD_SLOT_ATTRS = $(STARTD_SLOT_ATTRS) State'
    fi
}

daemon_shutdown_expression() {
    # Retired and no job runs anywhere on the startd: leave. (A slot's own
    # State cannot say this: a partitionable slot stays Unclaimed while its
    # dynamic slots run jobs.) The idle tail is watched by the script itself
    # (watch_idle_tail), since no slot attribute says when the last job ended.
    # A black hole leaves as soon as no job runs.
    _expr='(time() > GLIDEIN_ToRetire) && $(GLIDEIN_NothingRuns)'
    if [ "$blackhole_jobs" -gt 0 ]; then
        _expr="($_expr) || ((GLIDEIN_BlackHole =?= True) && \$(GLIDEIN_NothingRuns))"
    fi
    printf '%s' "$_expr"
}

check_advertised_values() {
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
}

staged_config_includes() {
    # The factory's condor-config files first, then the frontend's, each in
    # manifest order: the VO's settings win over the site's.
    for _origin in $MANIFEST_ORIGINS; do
        while read -r _sha _path _kind; do
            if [ "$_kind" = condor-config ]; then
                echo "include : $work_dir/files/$_origin/$_path"
            fi
        done <"$work_dir/manifest.$_origin.list"
    done
}

write_condor_config() {
    step=config
    check_advertised_values
    _local=$work_dir/condor
    mkdir -p "$_local/log" "$_local/spool" "$_local/execute" "$_local/lock" "$_local/run"
    resolve_release
    cpus=$(detect_cpus)
    _slots=$(slot_layout_config "$cpus")
    _cluster=${job_id%%.*}
    _proc=${job_id#*.}
    _site=${GLIDEIN_Site:-$entry}
    name_prefix="glidein_${_cluster}_${_proc}_$$"
    if [ "$nodes" -gt 1 ]; then
        # Each node names itself: <prefix>_node<i>@<its host>.
        glidein_name="${name_prefix}_node*"
    else
        glidein_name="${name_prefix}@$(uname -n)"
    fi
    plan_nodes
    _attrs="IS_GLIDEIN GLIDEIN_Site GLIDEIN_Entry_Name GLIDEIN_Factory GLIDEIN_Name GLIDECLIENT_Name GLIDECLIENT_Group GLIDEIN_ClusterId GLIDEIN_ProcId GLIDEIN_CredentialIdentifier GLIDEIN_ToRetire GLIDEIN_ToDie GLIDEIN_Max_Walltime GLIDEIN_Max_Idle GLIDEIN_Max_Tail GLIDEIN_Nodes GLIDEIN_NodeIndex"
    {
        echo "# Written by glidein_startup.sh for $glidein_name; rewritten at every start."
        echo "# Configuration staged by the factory, then by the frontend, in manifest order."
        staged_config_includes
        echo
        echo "# The pilot's own settings come last so no staged file can change"
        echo "# which HTCondor runs, which pool it joins, who the pilot says it is,"
        echo "# where it writes, or when it leaves."
        if [ -n "$release_dir" ]; then
            echo "RELEASE_DIR = $release_dir"
            echo 'BIN = $(RELEASE_DIR)/bin'
            echo 'SBIN = $(RELEASE_DIR)/sbin'
            echo 'LIB = $(RELEASE_DIR)/lib/condor'
            echo 'LIBEXEC = $(RELEASE_DIR)/libexec/condor'
            echo 'SHARE = $(RELEASE_DIR)/share/condor'
        fi
        echo "COLLECTOR_HOST = $collector"
        if [ -n "$pilot_token_dir" ]; then
            echo "# The startd proves it is the VO's pilot with its token, and nothing else."
            echo "SEC_TOKEN_DIRECTORY = $pilot_token_dir"
            echo 'SEC_CLIENT_AUTHENTICATION_METHODS = IDTOKENS'
            echo 'SEC_DEFAULT_AUTHENTICATION = REQUIRED'
            echo 'SEC_DEFAULT_ENCRYPTION = REQUIRED'
            echo 'SEC_DEFAULT_INTEGRITY = REQUIRED'
        fi
        echo "# (Each node of a multi-node pilot overrides LOCAL_DIR, the names and"
        echo "# GLIDEIN_NodeIndex in its own condor/node-<i>/condor_config.)"
        echo "LOCAL_DIR = $_local"
        echo 'LOG = $(LOCAL_DIR)/log'
        echo 'SPOOL = $(LOCAL_DIR)/spool'
        echo 'EXECUTE = $(LOCAL_DIR)/execute'
        echo 'LOCK = $(LOCAL_DIR)/lock'
        echo 'RUN = $(LOCAL_DIR)/run'
        echo "STARTD_HISTORY = $_local/log/startd_history"
        echo 'DAEMON_LIST = MASTER, STARTD'
        if [ "$nodes" -eq 1 ]; then
            echo "MASTER_NAME = $glidein_name"
            echo "STARTD_NAME = $glidein_name"
        fi
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
        echo "GLIDEIN_Nodes = $nodes"
        echo 'GLIDEIN_NodeIndex = 0'
        nothing_runs_config "$cpus"
        if [ "$blackhole_jobs" -gt 0 ]; then
            blackhole_config "$cpus"
            _attrs="$_attrs GLIDEIN_BlackHole GLIDEIN_BlackHole_Jobs GLIDEIN_BlackHole_Window"
        fi
        echo "STARTD_ATTRS = \$(STARTD_ATTRS) $_attrs"
        echo
        echo "NUM_CPUS = $cpus"
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
        echo "STARTD.DAEMON_SHUTDOWN = $(daemon_shutdown_expression)"
        echo '# The master has nothing to do once its startd has gone; in its first minute'
        echo '# the startd may simply not have started yet (a race that ended pilots at once).'
        echo 'MASTER.DAEMON_SHUTDOWN = STARTD_StartTime =?= 0 && time() - DaemonStartTime > 60'
        echo '# Benchmarks would delay the first match by minutes.'
        echo 'RunBenchmarks = False'
        echo 'BENCHMARKS_JOBLIST ='
    } >"$_local/condor_config"
    log "wrote $_local/condor_config"
}

# ---------------------------------------------------------------------------
# Multi-node pilots: the head prepares, then starts one --node-run per node
# ---------------------------------------------------------------------------

plan_nodes() {
    # With several nodes the work dir (on the shared filesystem) carries
    # everything a node needs: a copy of this script and nodes.conf.
    if [ "$nodes" -eq 1 ]; then
        return 0
    fi
    if [ -z "$node_launcher" ] && [ -n "${SLURM_JOB_ID:-}" ]; then
        # One task per node, each allowed the node's CPUs: srun would
        # otherwise confine every task to one CPU.
        node_launcher="srun --nodes=$nodes --ntasks=$nodes --ntasks-per-node=1 --cpus-per-task=$cpus"
    fi
    if [ -z "$node_launcher" ]; then
        fail config "$nodes nodes but no --node-launcher (or UPDRAFT_NODE_LAUNCHER), and no SLURM_JOB_ID for the srun default"
    fi
    # The pilot's own copy may sit in a node-local sandbox: the nodes run
    # the one in the shared work dir.
    if [ ! -f "$0" ]; then
        fail config "cannot find this script ($0) to start it on the nodes"
    fi
    cp -- "$0" "$work_dir/glidein_startup.sh.new"
    mv -f "$work_dir/glidein_startup.sh.new" "$work_dir/glidein_startup.sh"
    {
        echo "nodes=$nodes"
        echo "die_time=$die_time"
        echo "shutdown_margin=$shutdown_margin"
        echo "release_dir=$release_dir"
        echo "name_prefix=$name_prefix"
    } >"$work_dir/condor/nodes.conf"
}

clear_node_results() {
    # Results of an earlier run in the same work dir must not count.
    _i=0
    while [ "$_i" -lt "$nodes" ]; do
        rm -f "$work_dir/condor/node-$_i/condor_exit" "$work_dir/condor/node-$_i/error"
        _i=$((_i + 1))
    done
}

collect_node_results() {
    # collect_node_results LAUNCHER_EXIT: every node must have left its
    # condor_master's exit status; the first non-zero one is condor_exit.
    condor_exit=0
    _failed_node=
    _i=0
    while [ "$_i" -lt "$nodes" ]; do
        _dir=$work_dir/condor/node-$_i
        if [ -s "$_dir/error" ]; then
            fail condor "node $_i: $(cat "$_dir/error")"
        fi
        if [ ! -s "$_dir/condor_exit" ]; then
            fail condor "node $_i of $nodes left no result (node launcher exited with status $1)"
        fi
        _node_exit=$(cat "$_dir/condor_exit")
        case $_node_exit in
            '' | *[!0-9]*) fail condor "node $_i left a garbled exit status: '$_node_exit'" ;;
        esac
        if ! planned_exit "$_node_exit" && [ -z "$_failed_node" ]; then
            condor_exit=$_node_exit
            _failed_node=$_i
        fi
        _i=$((_i + 1))
    done
    if [ -n "$_failed_node" ] && [ "$(date +%s)" -lt "$die_time" ]; then
        fail condor "node $_failed_node: condor_master exited with status $condor_exit"
    fi
    if [ "$1" -ne 0 ]; then
        log "node launcher exited with status $1, but every node reported"
    fi
}

run_nodes() {
    # The launcher runs "sh WORK_DIR/glidein_startup.sh --node-run WORK_DIR"
    # once per node; timeout bounds it like a single condor_master.
    _left=$1
    clear_node_results
    log "starting $nodes nodes with: $node_launcher"
    set -f
    # shellcheck disable=SC2086  # the launcher is a command line, split into words
    set -- $node_launcher
    set +f
    # Node output goes to stderr: stdout is the report's.
    timeout --preserve-status --kill-after="$shutdown_margin" "$_left" \
        "$@" sh "$work_dir/glidein_startup.sh" --node-run "$work_dir" </dev/null >&2 &
    condor_pid=$!
    _launcher_exit=0
    wait "$condor_pid" || _launcher_exit=$?
    condor_pid=
    collect_node_results "$_launcher_exit"
}

# ---------------------------------------------------------------------------
# Running condor
# ---------------------------------------------------------------------------

forward_signal() {
    # The batch system asks us to stop: ask condor_master (or the node
    # launcher) to shut down gracefully and let the EXIT trap report.
    if [ -n "$condor_pid" ]; then
        kill -TERM "$condor_pid" 2>/dev/null || true
        wait "$condor_pid" 2>/dev/null || true
    fi
    fail "$step" "stopped by signal $1"
}

planned_exit() {
    # planned_exit STATUS: condor_master left as configured. It exits 0 when
    # asked to stop, and 99 when MASTER.DAEMON_SHUTDOWN made it leave (its
    # daemons had shut themselves down: retired, never claimed, black hole).
    [ "$1" -eq 0 ] || [ "$1" -eq 99 ]
}

run_master() {
    # run_master CONFIG SECONDS: condor_master -f until the die time; sets condor_exit.
    # env -i: the outer starter's environment would make the inner daemons
    # present its session ids to our collector. timeout sends TERM (graceful
    # shutdown) at the die time and KILL after the shutdown margin.
    env -i PATH="$release_dir/sbin:$release_dir/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        HOME="$work_dir" CONDOR_CONFIG="$1" \
        timeout --preserve-status --kill-after="$shutdown_margin" "$2" \
        "$release_dir/sbin/condor_master" -f &
    condor_pid=$!
    watch_idle_tail "$(dirname "$1")" "$condor_pid" &
    _watcher=$!
    condor_exit=0
    wait "$condor_pid" || condor_exit=$?
    kill "$_watcher" 2>/dev/null || true
    wait "$_watcher" 2>/dev/null || true
    condor_pid=
    if [ -f "$(dirname "$1")/idle_tail_reached" ]; then
        condor_exit=0  # we asked it to leave: its status says how the TERM was taken, not a failure
    fi
}

file_age() {
    # file_age FILE: seconds since FILE was last written.
    _mtime=$(date -r "$1" +%s 2>/dev/null || stat -c %Y "$1" 2>/dev/null || echo 0)
    echo $(($(date +%s) - _mtime))
}

no_job_runs() {
    # no_job_runs LOCAL_DIR: the starter keeps one sandbox per running job in EXECUTE.
    [ -z "$(ls -A "$1/execute" 2>/dev/null)" ]
}

watch_idle_tail() {
    # watch_idle_tail LOCAL_DIR PID: once jobs have run (the startd history
    # exists) and none has run for --idle-tail seconds, TERM condor (a
    # graceful shutdown, with nothing left to vacate). The history is
    # appended when a job ends, so its age is the time since the last job.
    _poll=$((idle_tail < 10 ? (idle_tail > 0 ? idle_tail : 1) : 10))
    # The sleep holds none of our output: when condor ends first and this
    # watcher is killed, a leftover sleep must not keep the job's pipes open.
    while sleep "$_poll" >/dev/null 2>&1; do
        if [ -s "$1/log/startd_history" ] && no_job_runs "$1" &&
            [ "$(file_age "$1/log/startd_history")" -ge "$idle_tail" ]; then
            log "idle for $idle_tail s after its last job: shutting down"
            : >"$1/idle_tail_reached"
            kill -TERM "$2" 2>/dev/null || true
            return 0
        fi
    done
}

run_condor() {
    step=condor
    if [ -z "$release_dir" ] || [ ! -x "$release_dir/sbin/condor_master" ]; then
        fail condor "condor_master not found (pass --condor-dir or --condor-tarball-url)"
    fi
    _left=$((die_time - $(date +%s)))
    if [ "$_left" -le 0 ]; then
        fail condor "die time passed before condor could start"
    fi
    trap 'forward_signal TERM' TERM
    trap 'forward_signal INT' INT
    trap 'forward_signal HUP' HUP
    if [ "$nodes" -gt 1 ]; then
        log "starting $nodes condor_masters ($glidein_name), joining $collector until $die_time"
        run_nodes "$_left"
        return
    fi
    log "starting condor_master for $glidein_name, joining $collector until $die_time"
    run_master "$work_dir/condor/condor_config" "$_left"
    if ! planned_exit "$condor_exit" && [ "$(date +%s)" -lt "$die_time" ]; then
        fail condor "condor_master exited with status $condor_exit"
    fi
}

# ---------------------------------------------------------------------------
# Startd histories: jobs, busy time, goodput, black holes
# ---------------------------------------------------------------------------

history_files() {
    # The startd histories, one per line: WORK_DIR/condor/log for a single
    # node, WORK_DIR/condor/node-<i>/log for each node of a multi-node pilot.
    if is_multi_node; then
        _i=0
        while [ "$_i" -lt "$nodes" ]; do
            if [ -s "$work_dir/condor/node-$_i/log/startd_history" ]; then
                echo "$work_dir/condor/node-$_i/log/startd_history"
            fi
            _i=$((_i + 1))
        done
    elif [ -s "$work_dir/condor/log/startd_history" ]; then
        echo "$work_dir/condor/log/startd_history"
    fi
}

log_dirs() {
    # The condor log dirs, one per line, as history_files.
    if is_multi_node; then
        _i=0
        while [ "$_i" -lt "$nodes" ]; do
            echo "$work_dir/condor/node-$_i/log"
            _i=$((_i + 1))
        done
    else
        echo "$work_dir/condor/log"
    fi
}

is_multi_node() {
    # Safe to ask before the arguments are checked (the report always asks).
    case $nodes in
        '' | *[!0-9]*) return 1 ;;
    esac
    [ "$nodes" -gt 1 ]
}

history_totals() {
    # history_totals FILE: "jobs busy busy_core goodput_core" for one startd
    # history (one job ad before each "***" banner). A job's duration is
    # JobDuration, else CompletionDate - JobCurrentStartDate, else
    # RemoteWallClockTime; its cores are RequestCpus (1 when absent or not a
    # whole number, e.g. an expression). Goodput: the job ended by itself (ExitCode, or
    # ExitBySignal = true) and the startd did not vacate it
    # (BadputCausedByPreemption / BadputCausedByDraining not true).
    awk -F ' = ' '
        function reset() {
            duration = done = started = wall = ended = vacated = 0
            cpus = 1
        }
        BEGIN { reset() }
        /^\*\*\*/ {
            jobs++
            if (duration > 0) d = duration
            else if (done > 0 && started > 0 && done > started) d = done - started
            else if (wall > 0) d = wall
            else d = 0
            busy += d
            core += d * cpus
            if (ended && !vacated) good += d * cpus
            reset()
            next
        }
        $1 == "JobDuration" { duration = int($2) }
        $1 == "CompletionDate" { done = int($2) }
        $1 == "JobCurrentStartDate" { started = int($2) }
        $1 == "RemoteWallClockTime" { wall = int($2) }
        $1 == "RequestCpus" && $2 ~ /^[0-9]+(\.0*)?$/ && $2 >= 1 { cpus = int($2) }
        $1 == "ExitCode" { ended = 1 }
        $1 == "ExitBySignal" && tolower($2) == "true" { ended = 1 }
        ($1 == "BadputCausedByPreemption" || $1 == "BadputCausedByDraining") && tolower($2) == "true" { vacated = 1 }
        END { printf "%.0f %.0f %.0f %.0f\n", jobs, busy, core, good }
    ' "$1"
}

count_jobs() {
    # "jobs busy busy_core goodput_core", summed over every node's startd
    # history; without any history, job starts counted in the StartLogs.
    if [ -z "$work_dir" ]; then
        echo '0 0 0 0'
        return
    fi
    _files=$(history_files)
    if [ -n "$_files" ]; then
        printf '%s\n' "$_files" | while IFS= read -r _file; do
            history_totals "$_file"
        done | awk '{ j += $1; b += $2; c += $3; g += $4 } END { printf "%.0f %.0f %.0f %.0f\n", j, b, c, g }'
        return
    fi
    log_dirs | while IFS= read -r _dir; do
        if [ -s "$_dir/StartLog" ]; then
            grep -c 'Changing activity: Idle -> Busy' "$_dir/StartLog" || true
        fi
    done | awk '{ starts += $1 } END { printf "%.0f 0 0 0\n", starts }'
}

most_starts_within() {
    # most_starts_within FILE SECONDS: the most jobs whose start times
    # (JobCurrentStartDate, else JobStartDate) lie less than SECONDS apart.
    awk -F ' = ' '
        /^\*\*\*/ {
            if (current > 0) print current
            else if (first > 0) print first
            current = first = 0
            next
        }
        $1 == "JobCurrentStartDate" { current = int($2) }
        $1 == "JobStartDate" { first = int($2) }
    ' "$1" | sort -n | awk -v window="$2" '
        BEGIN { oldest = 1; most = 0 }
        {
            start[NR] = $1
            while (start[NR] - start[oldest] >= window) oldest++
            if (NR - oldest + 1 > most) most = NR - oldest + 1
        }
        END { print most }
    '
}

check_blackhole() {
    # Even a clean exit hides a black hole: a node that fails every job it
    # gets empties the VO's queue through itself. Judge each startd alone.
    if [ "$blackhole_jobs" -eq 0 ]; then
        return 0
    fi
    step=blackhole
    history_files | while IFS= read -r _file; do
        _most=$(most_starts_within "$_file" "$blackhole_window")
        if [ "$_most" -gt "$blackhole_jobs" ]; then
            _node=
            case $_file in
                */condor/node-*/log/startd_history)
                    _node=${_file%/log/startd_history}
                    _node="node ${_node##*/node-}: "
                    ;;
            esac
            echo "$_node$_most jobs started within $blackhole_window s (limit $blackhole_jobs): the node fails jobs as fast as it gets them"
            break
        fi
    done >"$work_dir/blackhole.verdict"
    if [ -s "$work_dir/blackhole.verdict" ]; then
        fail blackhole "$(cat "$work_dir/blackhole.verdict")"
    fi
}

# ---------------------------------------------------------------------------
# One node of a multi-node pilot (--node-run WORK_DIR)
# ---------------------------------------------------------------------------

node_fail() {
    # node_fail REASON: the head reads the reason from condor/node-<i>/error.
    log "node ${node_index:-?}: $1"
    if [ -n "${node_dir:-}" ]; then
        printf '%s\n' "$(one_line "$1")" >"$node_dir/error"
    fi
    exit 1
}

node_conf() {
    # node_conf KEY: a value the head wrote in condor/nodes.conf.
    sed -n "s/^$1=//p" "$work_dir/condor/nodes.conf" | tail -n 1
}

node_on_exit() {
    _rc=$?
    trap - EXIT TERM INT HUP
    if [ "$_rc" -ne 0 ] && [ -n "${node_dir:-}" ] && [ ! -s "$node_dir/error" ] &&
        [ ! -s "$node_dir/condor_exit" ]; then
        printf 'unexpected error (exit status %s)\n' "$_rc" >"$node_dir/error"
    fi
    exit "$_rc"
}

node_forward_signal() {
    if [ -n "$condor_pid" ]; then
        kill -TERM "$condor_pid" 2>/dev/null || true
        wait "$condor_pid" 2>/dev/null || true
    fi
    node_fail "stopped by signal $1"
}

node_index_from_environment() {
    # Whichever launcher started us says which node we are.
    first_set '' UPDRAFT_NODE_INDEX SLURM_NODEID SLURM_PROCID PBS_VNODENUM \
        OMPI_COMM_WORLD_RANK PMI_RANK
}

write_node_config() {
    # The shared configuration, then what differs on this node.
    _name="${name_prefix}_node${node_index}@$(uname -n)"
    {
        echo "# Written by glidein_startup.sh --node-run for node $node_index of $nodes."
        echo "include : $work_dir/condor/condor_config"
        echo "LOCAL_DIR = $node_dir"
        echo "STARTD_HISTORY = $node_dir/log/startd_history"
        echo "MASTER_NAME = $_name"
        echo "STARTD_NAME = $_name"
        echo "GLIDEIN_NodeIndex = $node_index"
    } >"$node_dir/condor_config"
    log "node $node_index: wrote $node_dir/condor_config for $_name"
}

node_main() {
    # No report here: the head reports for every node, and srun would mix
    # every task's stdout into the pilot's.
    exec >&2
    trap node_on_exit EXIT
    work_dir=${1-}
    node_index=
    node_dir=
    if [ -z "$work_dir" ] || [ ! -s "$work_dir/condor/nodes.conf" ]; then
        node_fail "--node-run needs the work dir the head prepared (no condor/nodes.conf in '$work_dir')"
    fi
    nodes=$(node_conf nodes)
    die_time=$(node_conf die_time)
    shutdown_margin=$(node_conf shutdown_margin)
    release_dir=$(node_conf release_dir)
    name_prefix=$(node_conf name_prefix)
    node_index=$(node_index_from_environment)
    case $node_index in
        '' | *[!0-9]*)
            node_fail "no node index: set UPDRAFT_NODE_INDEX, or start nodes with srun, pbsdsh, mpiexec (got '$node_index')"
            ;;
    esac
    if [ "$node_index" -ge "$nodes" ]; then
        node_fail "node index $node_index is not below the node count $nodes"
    fi
    node_dir=$work_dir/condor/node-$node_index
    mkdir -p "$node_dir/log" "$node_dir/spool" "$node_dir/execute" "$node_dir/lock" "$node_dir/run"
    rm -f "$node_dir/error" "$node_dir/condor_exit"
    write_node_config
    _left=$((die_time - $(date +%s)))
    if [ "$_left" -le 0 ]; then
        node_fail "die time passed before condor could start"
    fi
    trap 'node_forward_signal TERM' TERM
    trap 'node_forward_signal INT' INT
    trap 'node_forward_signal HUP' HUP
    run_master "$node_dir/condor_config" "$_left"
    echo "$condor_exit" >"$node_dir/condor_exit"
    log "node $node_index: condor_master exited with status $condor_exit"
}

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

print_report() {
    _end=$(date +%s)
    _jobs=$(count_jobs 2>/dev/null || echo '0 0 0 0')
    # shellcheck disable=SC2086  # four numbers, split on purpose
    set -- $_jobs 0 0 0 0
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
    printf 'condor_source=%s\n' "$condor_source"
    printf 'nodes=%s\n' "$(one_line "${nodes:-1}")"
    printf 'cpus=%s\n' "$cpus"
    printf 'blackhole_jobs=%s\n' "$(one_line "$blackhole_jobs")"
    printf 'blackhole_window=%s\n' "$(one_line "$blackhole_window")"
    if [ -n "$validation_file" ] && [ -f "$validation_file" ]; then
        awk '{ printf "validation.%d=%s\n", NR, $0 }' "$validation_file"
    fi
    printf 'jobs_run=%s\n' "$1"
    printf 'busy_seconds=%s\n' "$2"
    printf 'busy_core_seconds=%s\n' "$3"
    printf 'goodput_core_seconds=%s\n' "$4"
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

install_pilot_token() {
    # The token the frontend minted for this entry arrives beside the script;
    # it moves into a folder only the pilot can read, and its content never
    # appears in a log or the report (only its id, GLIDEIN_CredentialIdentifier).
    [ -n "$pilot_token" ] || return 0
    step=token
    case $pilot_token in
        */* | .*) fail token "UPDRAFT_PILOT_TOKEN must be a file name in the sandbox, got $(one_line "$pilot_token")" ;;
    esac
    [ -s "$start_dir/$pilot_token" ] || fail token "the pilot token $pilot_token did not arrive with the pilot"
    pilot_token_dir=$work_dir/condor/tokens.d
    (umask 077 && mkdir -p "$pilot_token_dir" && cp "$start_dir/$pilot_token" "$pilot_token_dir/pilot.token") \
        || fail token "cannot install the pilot token in $pilot_token_dir"
    if ! chmod 700 "$pilot_token_dir" || ! chmod 600 "$pilot_token_dir/pilot.token"; then
        fail token "cannot make $pilot_token_dir private"
    fi
    # The sandbox copy arrived with whatever mode the transfer gave it.
    rm -f "$start_dir/$pilot_token"
    log "pilot token $credential_id installed for the startd"
}

prepare_work_dir() {
    mkdir -p "$work_dir" || fail args "cannot create work dir $work_dir"
    work_dir=$(cd "$work_dir" && pwd)
    validation_file=$work_dir/validation.results
    : >"$validation_file"
    validation_timeout=$(first_set 600 UPDRAFT_VALIDATION_TIMEOUT)
}

main() {
    if [ "${1-}" = --node-run ]; then
        shift
        node_main "$@"
        return
    fi
    trap on_exit EXIT
    set_failure_sleep_early
    parse_arguments "$@"
    apply_environment_fallbacks
    check_arguments
    prepare_work_dir
    fetch_manifests
    fetch_all_listed_files
    fetch_condor_tarball
    run_validations
    install_condor
    install_pilot_token
    compute_lifetime
    write_condor_config
    if [ "$dry_run" = 1 ]; then
        step=finished
        log "dry run: not starting condor"
        return 0
    fi
    run_condor
    check_blackhole
    step=finished
}

main "$@"
