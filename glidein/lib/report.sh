# shellcheck shell=sh disable=SC2034,SC2154  # the state is main.sh's; other parts read and set it
# The report the pilot prints on stdout at exit, whatever happened, then the
# failure sleep.
#
# It only defines functions (and their constants): glidein/README.md, "Layout".

REPORT_BEGIN='=== UPDRAFT PILOT REPORT BEGIN ==='
REPORT_END='=== UPDRAFT PILOT REPORT END ==='
REPORT_VERSION=2

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
