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
# shellcheck disable=SC2034,SC2154  # the parts (lib/*.sh) read and set this state
set -eu

# The pilot's state and its main flow; the functions it calls are defined in
# lib/*.sh, which updraft.glidein.assemble puts before this (glidein/README.md,
# "Layout").

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
node_scratch=''
filesystem_domain=''
uid_domain=''
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
