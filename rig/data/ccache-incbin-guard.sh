#!/bin/sh
# usage: ccache-incbin-guard.sh CCACHE COMPILER ARGS...
#
# The kernel's compiler: ccache, but the compiler alone for a source that
# holds an .incbin directive. Depend mode (CCACHE_DEPEND) keys an object
# by the source and the headers of its -MD file; a file pulled in with
# .incbin is in neither. arch/x86/boot/compressed/piggy.S includes the
# compressed vmlinux that way and says nothing but its sizes, so a kernel
# whose sizes matched an earlier build's got that build's piggy.o: a
# bzImage holding another tree's kernel. ccache refuses such a source only
# when it preprocesses, which depend mode never does.
#
# Only the compiled file is searched: no header or gas .include file of
# the kernel holds .incbin (every .incbin is in the .c or .S compiled).
ccache=$1
shift
for arg; do
	case $arg in
	*.c | *.S | *.s)
		if [ -f "$arg" ] && grep -q -F -e .incbin -- "$arg"; then
			exec "$@"
		fi
		;;
	esac
done
exec "$ccache" "$@"
