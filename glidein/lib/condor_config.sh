# shellcheck shell=sh disable=SC2034,SC2154  # the state is main.sh's; other parts read and set it
# Step config: the startd's configuration, rendered from
# templates/condor_config.in.
#
# It only defines functions (and their constants): glidein/README.md, "Layout".

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

daemon_shutdown_expression() {
    # Retired and no job runs anywhere on the startd: leave. (A slot's own
    # State cannot say this: a partitionable slot stays Unclaimed while its
    # dynamic slots run jobs.) The idle tail is watched by the script itself
    # (watch_idle_tail), since no slot attribute says when the last job ended.
    # A black hole leaves as soon as no job runs.
    # shellcheck disable=SC2016  # $(GLIDEIN_NothingRuns) is an HTCondor macro, written as is
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

slot_layout() {
    # GLIDEIN_Slots_Layout: partitionable (the default) or fixed.
    printf '%s' "${GLIDEIN_Slots_Layout:-partitionable}"
}

if_true() {
    # if_true CONDITION...: "yes" when the test holds, else nothing; the
    # template keeps an @?NAME@ line only for a non-empty value.
    if [ "$@" ]; then
        printf yes
    fi
}

render_condor_config() {
    # render_condor_config LOCAL_DIR <TEMPLATE: the startd's configuration
    # from the pilot's state (every advertised value already passed
    # check_advertised_values). The pilot's own attributes go in STARTD_ATTRS
    # so the frontend and the factory can see them.
    _attrs="IS_GLIDEIN GLIDEIN_Site GLIDEIN_Entry_Name GLIDEIN_Factory GLIDEIN_Name GLIDECLIENT_Name GLIDECLIENT_Group GLIDEIN_ClusterId GLIDEIN_ProcId GLIDEIN_CredentialIdentifier GLIDEIN_ToRetire GLIDEIN_ToDie GLIDEIN_Max_Walltime GLIDEIN_Max_Idle GLIDEIN_Max_Tail GLIDEIN_Nodes GLIDEIN_NodeIndex"
    _schedd=
    if [ -n "${GLIDEIN_Schedd:-}" ]; then
        _schedd=$(classad_string "$GLIDEIN_Schedd")
        _attrs="$_attrs GLIDEIN_Schedd"
    fi
    if [ "$blackhole_jobs" -gt 0 ]; then
        _attrs="$_attrs GLIDEIN_BlackHole GLIDEIN_BlackHole_Jobs GLIDEIN_BlackHole_Window"
    fi
    fill_template \
        "GLIDEIN_NAME=$glidein_name" \
        "STAGED_INCLUDES=$(staged_config_includes)" \
        "RELEASE_DIR=$release_dir" \
        "COLLECTOR=$collector" \
        "TOKEN_DIR=$pilot_token_dir" \
        "LOCAL_DIR=$1" \
        "SINGLE_NODE=$(if_true "$nodes" -eq 1)" \
        "SITE=$(classad_string "${GLIDEIN_Site:-$entry}")" \
        "ENTRY=$(classad_string "$entry")" \
        "FACTORY=$(classad_string "$factory")" \
        "NAME=$(classad_string "${GLIDEIN_Name:-$factory}")" \
        "FRONTEND=$(classad_string "$frontend")" \
        "GROUP=$(classad_string "$group")" \
        "SCHEDD=$_schedd" \
        "CLUSTER=${job_id%%.*}" \
        "PROC=${job_id#*.}" \
        "CREDENTIAL_ID=$(classad_string "$credential_id")" \
        "RETIRE_TIME=$retire_time" \
        "DIE_TIME=$die_time" \
        "MAX_WALLTIME=$max_walltime" \
        "MAX_IDLE=$max_idle" \
        "IDLE_TAIL=$idle_tail" \
        "NODES=$nodes" \
        "NOTHING_RUNS=$(nothing_runs_expression "$cpus")" \
        "FIXED_SLOTS=$(if_true "$(slot_layout)" = fixed)" \
        "PARTITIONABLE=$(if_true "$(slot_layout)" = partitionable)" \
        "BLACKHOLE=$(if_true "$blackhole_jobs" -gt 0)" \
        "BLACKHOLE_JOBS=$blackhole_jobs" \
        "BLACKHOLE_WINDOW=$blackhole_window" \
        "STARTD_ATTRS=$_attrs" \
        "CPUS=$cpus" \
        "MEMORY=${GLIDEIN_MaxMemMBs:-}" \
        "FILESYSTEM_DOMAIN=${filesystem_domain:-}" \
        "UID_DOMAIN=${uid_domain:-}" \
        "START=$(start_expression)" \
        "DAEMON_SHUTDOWN=$(daemon_shutdown_expression)"
}

write_condor_config() {
    step=config
    check_advertised_values
    _local=$work_dir/condor
    mkdir -p "$_local/log" "$_local/spool" "$_local/execute" "$_local/lock" "$_local/run"
    resolve_release
    cpus=$(detect_cpus)
    _cluster=${job_id%%.*}
    _proc=${job_id#*.}
    name_prefix="glidein_${_cluster}_${_proc}_$$"
    if [ "$nodes" -gt 1 ]; then
        # Each node names itself: <prefix>_node<i>@<its host>.
        glidein_name="${name_prefix}_node*"
    else
        glidein_name="${name_prefix}@$(uname -n)"
    fi
    plan_nodes
    if ! condor_config_template | render_condor_config "$_local" >"$_local/condor_config"; then
        fail config "cannot write $_local/condor_config from its template"
    fi
    log "wrote $_local/condor_config"
}
