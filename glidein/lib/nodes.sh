# shellcheck shell=sh disable=SC2034,SC2154  # the state is main.sh's; other parts read and set it
# Multi-node pilots: the head prepares the shared work dir and starts one
# --node-run per node; each node writes its own config, runs condor_master and
# leaves its result for the head.
#
# It only defines functions (and their constants): glidein/README.md, "Layout".

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
        echo "idle_tail=$idle_tail"
        echo "node_scratch=$node_scratch"
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
    remove_node_scratch
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

place_node_scratch() {
    # The jobs' sandboxes (EXECUTE) and condor's locks (LOCK) on the node's own disk when
    # --node-scratch names one: a shared filesystem is slow for sandboxes and unsafe for
    # locks. The rest (logs, spool, the startd history the head reads) stays shared.
    if [ -n "$node_scratch" ]; then
        node_local=$node_scratch/${name_prefix}_node$node_index
    else
        node_local=$node_dir
    fi
    node_execute=$node_local/execute
    node_lock=$node_local/lock
    mkdir -p "$node_execute" "$node_lock" || node_fail "cannot create $node_execute and $node_lock (--node-scratch)"
}

remove_node_scratch() {
    # What a pilot leaves on a node's own disk nobody else cleans up: removed however the node ends.
    if [ -n "${node_scratch:-}" ] && [ -n "${node_local:-}" ]; then
        rm -rf "$node_local" || true
    fi
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
        echo "EXECUTE = $node_execute"
        echo "LOCK = $node_lock"
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
    # Each node watches its own idle tail (run_master), so each retires once its own jobs are done.
    idle_tail=$(node_conf idle_tail)
    node_scratch=$(node_conf node_scratch)
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
    mkdir -p "$node_dir/log" "$node_dir/spool" "$node_dir/run"
    rm -f "$node_dir/error" "$node_dir/condor_exit"
    place_node_scratch
    write_node_config
    _left=$((die_time - $(date +%s)))
    if [ "$_left" -le 0 ]; then
        node_fail "die time passed before condor could start"
    fi
    trap 'node_forward_signal TERM' TERM
    trap 'node_forward_signal INT' INT
    trap 'node_forward_signal HUP' HUP
    run_master "$node_dir/condor_config" "$_left" "$node_execute"
    echo "$condor_exit" >"$node_dir/condor_exit"
    log "node $node_index: condor_master exited with status $condor_exit"
}
