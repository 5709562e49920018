# shellcheck shell=sh
# Filling in a template (templates/*.in) with POSIX awk.
#
# It only defines functions (and their constants): glidein/README.md, "Layout".

fill_template() {
    # fill_template NAME=VALUE... <TEMPLATE: the template with its
    # placeholders filled in (the syntax is in templates/condor_config.in).
    # The values reach awk through ARGV, read in BEGIN: -v would interpret
    # their backslashes, and ClassAd strings escape with them. An unknown
    # name, or a value of several lines inside a line (it would add lines
    # to the output), fails with status 2, so a template and its caller
    # cannot drift apart unnoticed.
    awk '
        function refuse(why) {
            print "fill_template: line " NR ": " why | "cat 1>&2"
            failed = 1
            exit 2
        }
        function value_of(name) {
            if (!(name in values)) refuse("no value for @" name "@")
            return values[name]
        }
        BEGIN {
            for (i = 1; i < ARGC; i++) {
                eq = index(ARGV[i], "=")
                values[substr(ARGV[i], 1, eq - 1)] = substr(ARGV[i], eq + 1)
            }
            ARGC = 1
        }
        /^@#/ { next }
        {
            line = $0
            if (match(line, /^@[?][A-Za-z0-9_]+@/)) {
                if (value_of(substr(line, 3, RLENGTH - 3)) == "") next
                line = substr(line, RLENGTH + 1)
            }
            if (match(line, /^@[A-Za-z0-9_]+@$/)) {
                block = value_of(substr(line, 2, RLENGTH - 2))
                if (block != "") print block
                next
            }
            out = ""
            while (match(line, /@[A-Za-z0-9_]+@/)) {
                name = substr(line, RSTART + 1, RLENGTH - 2)
                value = value_of(name)
                if (index(value, "\n")) refuse("@" name "@ has several lines but is not alone on its line")
                out = out substr(line, 1, RSTART - 1) value
                line = substr(line, RSTART + RLENGTH)
            }
            print out line
        }
        END { if (failed) exit 2 }
    ' "$@"
}
