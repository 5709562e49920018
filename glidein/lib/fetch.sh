# shellcheck shell=sh disable=SC2034,SC2154  # the state is main.sh's; other parts read and set it
# Steps fetch and verify: the manifests, each trusted by the SHA-256 from the
# submit, the files they list, each checked as soon as it lands, and the
# HTCondor tarball.
#
# It only defines functions (and their constants): glidein/README.md, "Layout".

MANIFEST_KINDS='validate-entry validate-frontend condor-config file'
# Where each manifest's files land under WORK_DIR/files, in the order they
# are validated and included: the factory's (entry) first, then the frontend's.
MANIFEST_ORIGINS='entry frontend'

sha256_of() {
    # Read from stdin so the file name never shows up (escaped) in the output.
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum <"$1" | awk '{print $1}'
    else
        shasum -a 256 <"$1" | awk '{print $1}'
    fi
}

fetch_url() {
    # fetch_url URL DEST: 0 on success. file:// is copied by hand because wget
    # does not know it (and tests should not depend on which tool is present).
    case $1 in
        file://*)
            _url_path=${1#file://}
            _url_path=${_url_path#localhost}
            cp -- "$_url_path" "$2" 2>/dev/null
            ;;
        http://* | https://*)
            if command -v curl >/dev/null 2>&1; then
                curl -fsSL --retry 2 --connect-timeout 30 --max-time 900 -o "$2" "$1"
            elif command -v wget >/dev/null 2>&1; then
                wget -q --tries=3 --timeout=60 -O "$2" "$1"
            else
                log "neither curl nor wget is installed"
                return 1
            fi
            ;;
        *)
            log "unsupported URL scheme: $1"
            return 1
            ;;
    esac
}

verify_sha256() {
    # verify_sha256 FILE EXPECTED WHAT
    _actual=$(sha256_of "$1")
    if [ "$_actual" != "$2" ]; then
        fail verify "SHA-256 mismatch for $3: expected $2, got $_actual"
    fi
}

manifest_name() {
    # manifest_name ORIGIN: how reasons name a manifest.
    case $1 in
        entry) printf 'factory manifest' ;;
        frontend) printf 'frontend manifest' ;;
    esac
}

manifest_kinds() {
    # manifest_kinds ORIGIN: the kinds its manifest may list. Each side
    # validates only what it knows about: the factory its entry's nodes, the
    # frontend its VO's needs.
    case $1 in
        entry) printf 'validate-entry condor-config file' ;;
        frontend) printf 'validate-frontend condor-config file' ;;
    esac
}

kind_home() {
    # kind_home KIND: which manifest a validation kind belongs in.
    case $1 in
        validate-entry) printf "the factory's manifest" ;;
        validate-frontend) printf "the frontend's manifest" ;;
    esac
}

fetch_manifest() {
    # fetch_manifest ORIGIN URL SHA256: download, check and parse one manifest.
    _origin=$1
    step=fetch
    if ! fetch_url "$2" "$work_dir/manifest.$_origin"; then
        fail fetch "cannot fetch $(manifest_name "$_origin") $2"
    fi
    step=verify
    verify_sha256 "$work_dir/manifest.$_origin" "$3" "$(manifest_name "$_origin") $2"
    read_manifest "$_origin"
}

fetch_manifests() {
    # An empty list stands for the frontend manifest a pilot was not given.
    : >"$work_dir/manifest.frontend.list"
    fetch_manifest entry "$manifest_url" "$manifest_sha256"
    if [ -n "$frontend_manifest_url" ]; then
        fetch_manifest frontend "$frontend_manifest_url" "$frontend_manifest_sha256"
    fi
}

check_manifest_path() {
    # Listed paths stay inside the work dir: relative, no '..', plain characters.
    case $1 in
        '' | /* | *[!A-Za-z0-9._/-]*) return 1 ;;
    esac
    case /$1/ in
        */../*) return 1 ;;
    esac
}

parse_manifest_line() {
    # parse_manifest_line ORIGIN NUMBER LINE: append "sha path kind" to manifest.ORIGIN.list.
    _origin=$1
    _where="$(manifest_name "$1") line $2"
    set -f
    # shellcheck disable=SC2086  # splitting the line into fields is the point
    set -- $3
    set +f
    if [ $# -ne 3 ]; then
        fail verify "$_where: expected 'sha256 path kind', got $# fields"
    fi
    case $1 in
        *[!0-9a-f]*) fail verify "$_where: bad sha256 for $2" ;;
    esac
    if [ ${#1} -ne 64 ]; then
        fail verify "$_where: bad sha256 for $2"
    fi
    check_manifest_path "$2" || fail verify "$_where: path not allowed: $2"
    case " $(manifest_kinds "$_origin") " in
        *" $3 "*) ;;
        *)
            case " $MANIFEST_KINDS " in
                *" $3 "*) fail verify "$_where: kind $3 belongs in $(kind_home "$3")" ;;
                *) fail verify "$_where: unknown kind '$3' for $2" ;;
            esac
            ;;
    esac
    printf '%s %s %s\n' "$1" "$2" "$3" >>"$work_dir/manifest.$_origin.list"
}

read_manifest() {
    # read_manifest ORIGIN
    step=verify
    : >"$work_dir/manifest.$1.list"
    _n=0
    while IFS= read -r _line || [ -n "$_line" ]; do
        _n=$((_n + 1))
        _trimmed=$(printf '%s' "$_line" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
        case $_trimmed in
            '' | '#'*) continue ;;
        esac
        parse_manifest_line "$1" "$_n" "$_trimmed"
    done <"$work_dir/manifest.$1"
}

fetch_listed_files() {
    # fetch_listed_files ORIGIN MANIFEST_URL: each file lives next to its own
    # manifest (URL = manifest's folder + path) and lands in WORK_DIR/files/ORIGIN.
    _base=${2%/*}
    _what=$(manifest_name "$1")
    while read -r _sha _path _kind; do
        _dest=$work_dir/files/$1/$_path
        mkdir -p "$(dirname "$_dest")"
        step=fetch
        if ! fetch_url "$_base/$_path" "$_dest"; then
            fail fetch "cannot fetch $_path ($_what) from $_base/$_path"
        fi
        step=verify
        verify_sha256 "$_dest" "$_sha" "$_path ($_what)"
    done <"$work_dir/manifest.$1.list"
}

fetch_all_listed_files() {
    fetch_listed_files entry "$manifest_url"
    if [ -n "$frontend_manifest_url" ]; then
        fetch_listed_files frontend "$frontend_manifest_url"
    fi
}

wants_tarball() {
    # The tarball counts only when no --condor-dir overrides it.
    [ -n "$condor_tarball_url" ] && [ -z "$condor_dir" ]
}

fetch_condor_tarball() {
    if [ -z "$condor_tarball_url" ]; then
        return 0
    fi
    if ! wants_tarball; then
        log "--condor-dir $condor_dir wins over --condor-tarball-url: not fetching the tarball"
        return 0
    fi
    step=fetch
    if ! fetch_url "$condor_tarball_url" "$work_dir/condor-tarball"; then
        fail fetch "cannot fetch the condor tarball $condor_tarball_url"
    fi
    step=verify
    verify_sha256 "$work_dir/condor-tarball" "$condor_tarball_sha256" "condor tarball $condor_tarball_url"
}
