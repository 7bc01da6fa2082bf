#!/bin/sh
# C_COMPILER_LAUNCHER / RULE_LAUNCH_LINK for moatctl's front
# (app/moatctl/CMakeLists.txt):
#   musl-cc.sh MUSL_GCC MUSL_LIBDIR CC ARGS...
# runs MUSL_GCC ARGS... (the compiler CMake chose is dropped). A link is made
# static-pie by hand: Debian's musl-gcc.specs knows -static but not
# -static-pie (it always asks for musl's dynamic loader), so the start files
# are musl's rcrt1.o (which relocates the program itself) and the linker is
# told there is no loader. The result is a position-independent executable
# with no interpreter and no shared library.
musl=$1
libdir=$2
shift 3
for a in "$@"; do
    [ "$a" = "-c" ] && exec "$musl" "$@"
done
exec "$musl" -nostartfiles "$libdir/rcrt1.o" "$libdir/crti.o" "$("$musl" -print-file-name=crtbeginS.o)" "$@" \
    "$("$musl" -print-file-name=crtendS.o)" "$libdir/crtn.o" \
    -Wl,-static -Wl,-pie -Wl,--no-dynamic-linker -Wl,-z,text -Wl,-z,relro -Wl,-z,now
