# shellcheck shell=sh disable=SC2034,SC2154  # the state is main.sh's; other parts read and set it
# Step validate: the entry's validation scripts, then the frontend's.
#
# It only defines functions (and their constants): glidein/README.md, "Layout".

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
