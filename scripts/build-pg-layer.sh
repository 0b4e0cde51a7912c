#!/usr/bin/env bash
# Builds a Lambda layer holding pg_dump and pg_restore of one PostgreSQL major version:
#
#   scripts/build-pg-layer.sh [major] [outdir]      →  <outdir>/pgtools-<major>.zip  (default major 17,
#                                                       default outdir layer/build); the path on stdout
#
# Layout inside the zip (Lambda unpacks layers to /opt):
#   bin/pg_dump, bin/pg_restore   the client binaries (17: also bin/psql)
#   lib/*.so.*                    every shared library they load, except glibc's own (Lambda provides those)
#   VERSION                       the client's `pg_dump --version`
#
# Major 17 (the default) is compiled here from Debian 13's source package by scripts/build-postgres.sh,
# which caches the result per pinned version outside the work tree (LSB_BUILD_CACHE) and runs all
# the checks below itself; this script copies its zip. LSB_PG_LAYER_FROM=deb takes 17 from Debian
# packages instead, like every other major:
#
# The binaries come from Debian packages fetched with `apt-get download` and unpacked with
# `dpkg-deb -x` into a temporary directory: nothing is installed system-wide. When apt has no
# postgresql-client-<major> (16 and newer need the PGDG repository), point LSB_PG_DEB_DIR at a
# directory holding postgresql-client-<major>_*.deb and libpq5_*.deb, or at one where they were
# already unpacked with dpkg-deb -x.
#
# Lambda's Amazon Linux 2023 has glibc 2.34: every file of the layer is checked with objdump and
# the build fails when one needs a newer GLIBC_ symbol version, naming the file and the symbols.
set -euo pipefail

readonly MAX_GLIBC=2.34
# glibc's own libraries: Lambda's must be used (a foreign libc next to Lambda's ld.so breaks).
readonly GLIBC_LIBS='^(ld-linux.*|libc|libm|libdl|librt|libpthread|libresolv|libutil|libanl|libnsl|libBrokenLocale|libnss_[a-z]+|libmvec|libthread_db)\.so'

die() {
  echo "build-pg-layer: $*" >&2
  exit 1
}

# The major scripts/build-postgres.sh compiles from source.
readonly SOURCE_BUILT_MAJOR=17

major=${1:-$SOURCE_BUILT_MAJOR}
[[ $major =~ ^[0-9]{2}$ ]] || die "usage: $0 [postgres-major, default $SOURCE_BUILT_MAJOR] [outdir]"
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
outdir=${2:-$repo_root/layer/build}
layer_from=${LSB_PG_LAYER_FROM:-}
if [[ -z $layer_from ]]; then
  if [[ $major == "$SOURCE_BUILT_MAJOR" && -z ${LSB_PG_DEB_DIR:-} ]]; then layer_from=source; else layer_from=deb; fi
fi
[[ $layer_from == source || $layer_from == deb ]] || die "LSB_PG_LAYER_FROM=$layer_from: expected source or deb"

if [[ $layer_from == source ]]; then
  [[ $major == "$SOURCE_BUILT_MAJOR" ]] ||
    die "only PostgreSQL $SOURCE_BUILT_MAJOR is built from source (scripts/build-postgres.sh); for $major use LSB_PG_LAYER_FROM=deb"
  # Cached per version: a no-op after the first build. Its checks (glibc <= 2.34, every library
  # from the layer, the tools running with an empty environment) are done there.
  built=$(bash "$repo_root/scripts/build-postgres.sh") || die "scripts/build-postgres.sh failed"
  [[ -f $built/pgtools-$major.zip ]] || die "scripts/build-postgres.sh left no $built/pgtools-$major.zip"
  mkdir -p "$outdir"
  zipfile=$(cd "$outdir" && pwd)/pgtools-$major.zip
  # Copy beside the target then rename: a concurrent reader never sees a half-written zip.
  cp -f "$built/pgtools-$major.zip" "$zipfile.partial.$$" && mv -f "$zipfile.partial.$$" "$zipfile"
  echo "build-pg-layer: $zipfile ($(cat "$built/layer/VERSION"); built from source, see $built/BUILD-INFO; $(du -k "$zipfile" | cut -f1) KiB)" >&2
  echo "$zipfile"
  exit 0
fi
for tool in dpkg-deb objdump zip ldd sort; do
  command -v "$tool" >/dev/null || die "$tool is required (apt-get install binutils zip dpkg)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/lsb-pglayer.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
layer=$work/layer
mkdir -p "$root" "$layer/bin" "$layer/lib"

# 1. Get the packages' files into $root.
if [[ -n ${LSB_PG_DEB_DIR:-} ]]; then
  [[ -d $LSB_PG_DEB_DIR ]] || die "LSB_PG_DEB_DIR=$LSB_PG_DEB_DIR is not a directory"
  shopt -s nullglob
  debs=("$LSB_PG_DEB_DIR"/postgresql-client-"$major"_*.deb "$LSB_PG_DEB_DIR"/libpq5_*.deb)
  shopt -u nullglob
  if ((${#debs[@]} > 0)); then
    for deb in "${debs[@]}"; do dpkg-deb -x "$deb" "$root"; done
  else
    cp -a "$LSB_PG_DEB_DIR"/. "$root"/
  fi
else
  if ! apt-cache show "postgresql-client-$major" >/dev/null 2>&1; then
    die "postgresql-client-$major is not available from this machine's apt sources.
  Debian's own repository has only its release's major version (bookworm: 15); $SOURCE_BUILT_MAJOR is built from
  Debian 13's source by default (scripts/build-pg-layer.sh $SOURCE_BUILT_MAJOR). For another major:
  - run this script on a machine with the PGDG repository (https://wiki.postgresql.org/wiki/Apt)
    configured: apt-get update && scripts/build-pg-layer.sh $major
  - or fetch the packages there (apt-get download postgresql-client-$major libpq5), copy the .deb
    files here and run: LSB_PG_DEB_DIR=/path/to/debs scripts/build-pg-layer.sh $major"
  fi
  (cd "$work" && apt-get download "postgresql-client-$major" libpq5 >/dev/null 2>"$work/apt.log") ||
    die "apt-get download postgresql-client-$major libpq5 failed: $(cat "$work/apt.log")"
  for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$root"; done
fi

bindir=$root/usr/lib/postgresql/$major/bin
for tool in pg_dump pg_restore; do
  [[ -x $bindir/$tool ]] || die "no $tool in the package files (expected $bindir/$tool)"
  file_header=$(objdump -f "$bindir/$tool" | grep -o 'file format [a-z0-9-]*' || true)
  [[ $file_header == 'file format elf64-x86-64' ]] || die "$tool is not an x86-64 ELF ($file_header): Lambda functions here run on x86_64"
  cp -L "$bindir/$tool" "$layer/bin/$tool"
done
pkglibs=$(find "$root" -type d -name 'x86_64-linux-gnu' | tr '\n' ':')

# 2. Copy every library the binaries load, package files first, then the system's, following
#    symlinks to the real file but keeping the soname (the name the loader asks for).
for tool in pg_dump pg_restore; do
  LD_LIBRARY_PATH=$pkglibs ldd "$layer/bin/$tool" >"$work/ldd.$tool" || die "ldd $tool failed"
  if grep -q 'not found' "$work/ldd.$tool"; then
    die "$tool needs libraries this machine does not have:
$(grep 'not found' "$work/ldd.$tool")
  install the Debian packages that provide them, then run this script again"
  fi
  while read -r soname _arrow path _addr; do
    [[ ${_arrow:-} == '=>' && -n ${path:-} && $path == /* ]] || continue
    [[ $soname =~ $GLIBC_LIBS ]] && continue
    cp -L "$path" "$layer/lib/$soname"
  done <"$work/ldd.$tool"
done
chmod 0755 "$layer/bin/"* && chmod 0644 "$layer/lib/"*

# 3. No file may need a glibc newer than Lambda's.
too_new=''
max_seen=0
for f in "$layer/bin/"* "$layer/lib/"*; do
  versions=$(objdump -p "$f" | awk '/^Version References:/ {refs=1; next} refs && /^$/ {refs=0} refs' | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV)
  for v in $versions; do
    max_seen=$(printf '%s\n%s\n' "$max_seen" "$v" | sort -V | tail -1)
    if [[ $(printf '%s\n%s\n' "$MAX_GLIBC" "$v" | sort -V | tail -1) != "$MAX_GLIBC" ]]; then
      symbols=$(objdump -T "$f" | grep -F "(GLIBC_$v)" | awk '{print $NF}' | sort -u | tr '\n' ' ')
      too_new+="  ${f#"$layer/"} needs GLIBC_$v (${symbols% })"$'\n'
    fi
  done
done
[[ -z $too_new ]] || die "files need a glibc newer than Lambda's $MAX_GLIBC:
$too_new  build from packages of an older distribution release"

# 4. Zip it. The version is read from the binary itself, as the preflight will read it on Lambda.
version=$(LD_LIBRARY_PATH=$layer/lib "$layer/bin/pg_dump" --version)
[[ $version == *" $major."* ]] || die "pg_dump reports '$version', expected major $major"
echo "$version" >"$layer/VERSION"
mkdir -p "$outdir"
zipfile=$(cd "$outdir" && pwd)/pgtools-$major.zip
# Zip beside the target then rename: a concurrent reader never sees a half-written zip.
(cd "$layer" && zip -q -r -X "$work/layer.zip" bin lib VERSION)
mv -f "$work/layer.zip" "$zipfile.partial.$$" && mv -f "$zipfile.partial.$$" "$zipfile"
echo "build-pg-layer: $zipfile ($version; $(ls "$layer/lib" | wc -l) libraries; max GLIBC_$max_seen; $(du -k "$zipfile" | cut -f1) KiB)" >&2
echo "$zipfile"
