#!/bin/sh
# Says where it ran: the worker's slot name comes from the machine ad the
# starter hands every job.
echo "args: $*"
echo "user: $(id -un)"
grep '^Name ' "$_CONDOR_MACHINE_AD"
