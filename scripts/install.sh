#!/usr/bin/env bash
# Installs the C/C++ package of ps3rt into PREFIX:
#
#   PREFIX/include/ps3rt.h, ps3rt.hpp           C API (generated, committed) and C++17 wrapper
#   PREFIX/lib/libps3rt.so.<ABI>                 shared library, SONAME libps3rt.so.<ABI>
#   PREFIX/lib/libps3rt.so -> libps3rt.so.<ABI>  link-time name
#   PREFIX/lib/libps3rt.a                        static library
#   PREFIX/lib/pkgconfig/ps3rt.pc                pkg-config (shared; --static adds the system libs)
#   PREFIX/lib/pkgconfig/ps3rt-static.pc         pkg-config for linking libps3rt.a
#   PREFIX/lib/cmake/ps3rt/ps3rtConfig.cmake     find_package(ps3rt): ps3rt::ps3rt, ps3rt::ps3rt_static
#   PREFIX/lib/cmake/ps3rt/ps3rtConfigVersion.cmake
#   PREFIX/share/ps3rt/python/ps3rt.py           ctypes binding (finds ../../../lib/libps3rt.so.<ABI>)
#   PREFIX/share/doc/ps3rt/c-api.md              reference
#
# The pkg-config and CMake files locate the prefix relative to themselves, so the tree can be moved.
#
#   scripts/install.sh [--no-build] [--strip] [--profile release|dev] [--target TRIPLE] PREFIX
#     --no-build   install the profile's build as it is (default: cargo build --lib first)
#     --strip      strip debug information from the installed libraries
#     --profile    which cargo profile to build and install (default release; dev = target/debug,
#                  used by the test command to reuse the test build)
#     --target     install a cross build from target/TRIPLE/<profile> (e.g. aarch64-unknown-linux-gnu,
#                  built by cross/build-jetson.sh; implies --no-build); $STRIP names the strip tool
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

build=1
strip=0
profile=release
triple=
prefix=
args=("$@")
i=0
while [ $i -lt ${#args[@]} ]; do
    arg=${args[$i]}
    i=$((i + 1))
    case "$arg" in
        --target)
            triple=${args[$i]:-}
            i=$((i + 1))
            build=0
            ;;
        --profile)
            profile=${args[$i]:-}
            i=$((i + 1))
            case "$profile" in release | dev) ;; *)
                echo "install.sh: --profile must be release or dev" >&2
                exit 2
                ;;
            esac
            ;;
        --no-build) build=0 ;;
        --strip) strip=1 ;;
        -h | --help)
            sed -n '2,20p' "$0"
            exit 0
            ;;
        -*)
            echo "install.sh: unknown option $arg" >&2
            exit 2
            ;;
        *)
            if [ -n "$prefix" ]; then
                echo "install.sh: one PREFIX only" >&2
                exit 2
            fi
            prefix=$arg
            ;;
    esac
done
if [ -z "$prefix" ]; then
    echo "usage: scripts/install.sh [--no-build] [--strip] PREFIX" >&2
    exit 2
fi

if [ "$build" = 1 ]; then
    (cd "$root" && cargo build --profile "$profile" --lib)
fi
target=${CARGO_TARGET_DIR:-$root/target}/${triple:+$triple/}$([ "$profile" = dev ] && echo debug || echo release)
for f in libps3rt.so libps3rt.a; do
    if [ ! -f "$target/$f" ]; then
        echo "install.sh: $target/$f is missing (run without --no-build)" >&2
        exit 1
    fi
done

header="$root/include/ps3rt.h"
macro() { sed -n "s/^#define $1 \([0-9][0-9]*\)\$/\1/p" "$header"; }
major=$(macro PS3RT_VERSION_MAJOR)
minor=$(macro PS3RT_VERSION_MINOR)
patch=$(macro PS3RT_VERSION_PATCH)
abi=$(macro PS3RT_ABI_VERSION)
if [ -z "$major" ] || [ -z "$minor" ] || [ -z "$patch" ] || [ -z "$abi" ]; then
    echo "install.sh: cannot read the version macros of $header" >&2
    exit 1
fi
version="$major.$minor.$patch"
soname="libps3rt.so.$abi"
actual=$(readelf -d "$target/libps3rt.so" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
if [ "$actual" != "$soname" ]; then
    echo "install.sh: $target/libps3rt.so has SONAME '$actual', the header's ABI says $soname" >&2
    exit 1
fi
# What a static link needs besides libps3rt.a (rustc --print native-static-libs on linux-gnu), and
# a non-executable stack (an assembly kernel object of tract carries no .note.GNU-stack).
static_libs="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
lib="$prefix/lib"
mkdir -p "$prefix/include" "$lib/pkgconfig" "$lib/cmake/ps3rt" "$prefix/share/ps3rt/python" \
    "$prefix/share/doc/ps3rt"

install -m 644 "$header" "$root/bindings/cpp/ps3rt.hpp" "$prefix/include/"
rm -f "$lib/libps3rt.so" "$lib/$soname"
install -m 755 "$target/libps3rt.so" "$lib/$soname"
ln -s "$soname" "$lib/libps3rt.so"
install -m 644 "$target/libps3rt.a" "$lib/libps3rt.a"
if [ "$strip" = 1 ]; then
    ${STRIP:-strip} --strip-debug "$lib/$soname" "$lib/libps3rt.a"
fi
install -m 644 "$root/bindings/python/ps3rt.py" "$prefix/share/ps3rt/python/"
install -m 644 "$root/docs/c-api.md" "$prefix/share/doc/ps3rt/"

cat >"$lib/pkgconfig/ps3rt.pc" <<PC
prefix=\${pcfiledir}/../..
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: ps3rt
Description: Edge runtime for the PS3 4K vision encoder (C API)
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lps3rt
Libs.private: $static_libs -Wl,-z,noexecstack
PC

cat >"$lib/pkgconfig/ps3rt-static.pc" <<PC
prefix=\${pcfiledir}/../..
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: ps3rt-static
Description: Edge runtime for the PS3 4K vision encoder (C API, static library)
Version: $version
Cflags: -I\${includedir} -DPS3RT_STATIC
Libs: \${libdir}/libps3rt.a $static_libs -Wl,-z,noexecstack
PC

cat >"$lib/cmake/ps3rt/ps3rtConfig.cmake" <<CMAKE
# ps3rt $version: imported targets of an installed ps3rt (scripts/install.sh).
#
#   find_package(ps3rt $major.$minor REQUIRED)
#   target_link_libraries(app PRIVATE ps3rt::ps3rt)          # shared library ($soname)
#   target_link_libraries(app PRIVATE ps3rt::ps3rt_static)   # static library (libps3rt.a)
#
# Both targets carry the include directory (ps3rt.h, ps3rt.hpp).

get_filename_component(_ps3rt_prefix "\${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)

if(NOT TARGET ps3rt::ps3rt)
  add_library(ps3rt::ps3rt SHARED IMPORTED)
  set_target_properties(ps3rt::ps3rt PROPERTIES
    IMPORTED_LOCATION "\${_ps3rt_prefix}/lib/$soname"
    IMPORTED_SONAME "$soname"
    INTERFACE_INCLUDE_DIRECTORIES "\${_ps3rt_prefix}/include")
endif()

if(NOT TARGET ps3rt::ps3rt_static)
  include(CMakeFindDependencyMacro)
  set(THREADS_PREFER_PTHREAD_FLAG ON)
  find_dependency(Threads)
  add_library(ps3rt::ps3rt_static STATIC IMPORTED)
  set_target_properties(ps3rt::ps3rt_static PROPERTIES
    IMPORTED_LOCATION "\${_ps3rt_prefix}/lib/libps3rt.a"
    IMPORTED_LINK_INTERFACE_LANGUAGES "C"
    INTERFACE_INCLUDE_DIRECTORIES "\${_ps3rt_prefix}/include"
    INTERFACE_COMPILE_DEFINITIONS "PS3RT_STATIC"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;gcc_s;util;rt;m;dl"
    INTERFACE_LINK_OPTIONS "LINKER:-z,noexecstack")
endif()

set(ps3rt_ABI_VERSION $abi)
unset(_ps3rt_prefix)
CMAKE

cat >"$lib/cmake/ps3rt/ps3rtConfigVersion.cmake" <<CMAKE
# ps3rt $version: compatible with a request for the same major version (and, while the major
# version is 0, the same minor version) that is not newer than $version.
set(PACKAGE_VERSION "$version")
set(PACKAGE_VERSION_COMPATIBLE FALSE)
set(PACKAGE_VERSION_EXACT FALSE)
if(PACKAGE_FIND_VERSION)
  if(NOT PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION
     AND PACKAGE_FIND_VERSION_MAJOR EQUAL $major
     AND ($major GREATER 0 OR PACKAGE_FIND_VERSION_MINOR EQUAL $minor))
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  endif()
  if(PACKAGE_FIND_VERSION VERSION_EQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
endif()
# A 64-bit library: refuse a 32-bit consumer.
if(CMAKE_SIZEOF_VOID_P AND NOT CMAKE_SIZEOF_VOID_P EQUAL 8)
  set(PACKAGE_VERSION "\${PACKAGE_VERSION} (64-bit)")
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
endif()
CMAKE

echo "install.sh: ps3rt $version (ABI $abi) installed in $prefix" >&2
