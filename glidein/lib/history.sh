# shellcheck shell=sh disable=SC2034,SC2154  # the state is main.sh's; other parts read and set it
# The startd histories: the report's job figures, and step blackhole.
#
# It only defines functions (and their constants): glidein/README.md, "Layout".

is_multi_node() {
    # Safe to ask before the arguments are checked (the report always asks).
    case $nodes in
        '' | *[!0-9]*) return 1 ;;
    esac
    [ "$nodes" -gt 1 ]
}

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
