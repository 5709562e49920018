# shellcheck shell=sh disable=SC2034,SC2154  # the state is main.sh's; other parts read and set it
# What every part uses: progress messages, failing a step, one-line report
# values, environment look-ups, bounded commands.
#
# It only defines functions (and their constants): glidein/README.md, "Layout".

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

lowercase() {
    printf '%s' "$1" | tr 'A-F' 'a-f'
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
