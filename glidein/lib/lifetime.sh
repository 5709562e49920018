# shellcheck shell=sh disable=SC2034,SC2154  # the state is main.sh's; other parts read and set it
# Step lifetime: when to stop taking jobs, and when to die.
#
# It only defines functions (and their constants): glidein/README.md, "Layout".

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
