# shellcheck shell=sh disable=SC2034,SC2154  # the state is main.sh's; other parts read and set it
# Steps install and token: HTCondor from the tarball, and the pilot token the
# factory sent with the pilot.
#
# It only defines functions (and their constants): glidein/README.md, "Layout".

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
