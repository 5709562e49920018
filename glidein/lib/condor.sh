# shellcheck shell=sh disable=SC2034,SC2154  # the state is main.sh's; other parts read and set it
# Step condor: condor_master under timeout until the die time, signals passed
# on, the idle tail watched.
#
# It only defines functions (and their constants): glidein/README.md, "Layout".

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
    # run_master CONFIG SECONDS [EXECUTE_DIR]: condor_master -f until the die time; sets condor_exit.
    # EXECUTE_DIR is where the config put EXECUTE (default: LOCAL_DIR/execute, beside the config).
    # env -i: the outer starter's environment would make the inner daemons
    # present its session ids to our collector. timeout sends TERM (graceful
    # shutdown) at the die time and KILL after the shutdown margin.
    env -i PATH="$release_dir/sbin:$release_dir/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        HOME="$work_dir" CONDOR_CONFIG="$1" \
        timeout --preserve-status --kill-after="$shutdown_margin" "$2" \
        "$release_dir/sbin/condor_master" -f &
    condor_pid=$!
    watch_idle_tail "$(dirname "$1")" "$condor_pid" "${3:-$(dirname "$1")/execute}" &
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
    # no_job_runs EXECUTE_DIR: the starter keeps one sandbox per running job there.
    [ -z "$(ls -A "$1" 2>/dev/null)" ]
}

watch_idle_tail() {
    # watch_idle_tail LOCAL_DIR PID EXECUTE_DIR: once jobs have run (the startd history
    # exists) and none has run for --idle-tail seconds, TERM condor (a
    # graceful shutdown, with nothing left to vacate). The history is
    # appended when a job ends, so its age is the time since the last job.
    _poll=$((idle_tail < 10 ? (idle_tail > 0 ? idle_tail : 1) : 10))
    # The sleep holds none of our output: when condor ends first and this
    # watcher is killed, a leftover sleep must not keep the job's pipes open.
    while sleep "$_poll" >/dev/null 2>&1; do
        if [ -s "$1/log/startd_history" ] && no_job_runs "$3" &&
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
