#!/bin/sh
echo pilot stand-in on $(hostname) as $(id -un)
echo args: $*
env | grep -i -E "^(HOME|PWD|X509)" | sort
