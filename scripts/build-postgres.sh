#!/usr/bin/env bash
# Builds PostgreSQL 17 here (Debian 12) from Debian 13's source package, once per version:
#
#   scripts/build-postgres.sh          →  prints the cache directory on stdout, a summary on stderr
#   scripts/build-postgres.sh --cached-only   the same when already built, else fails at once
#
# Two outputs, cached outside the work tree in ${LSB_BUILD_CACHE:-/var/cache/langsight-backup}
# (~/.cache/langsight-backup when not root), one directory per pinned Debian version:
#
#   postgresql-<deb-version>/server/       a full install prefix (initdb, pg_ctl, postgres, psql,
#                                          pg_dump, pg_restore, …, lib/, share/) to start a server
#   postgresql-<deb-version>/layer/        the Lambda layer unpacked: bin/pg_dump, bin/pg_restore,
#                                          bin/psql, lib/libpq.so.5 and every non-glibc library they
#                                          load (Debian 12's), VERSION (`pg_dump --version`)
#   postgresql-<deb-version>/pgtools-17.zip  that layer zipped (deterministic entry order and times)
#   postgresql-<deb-version>/BUILD-INFO    version, source hashes, configure flags, zip sha256
#   downloads/                             the verified .dsc, .orig.tar.bz2 and .debian.tar.xz
#
# A second run finds postgresql-<deb-version>/.complete naming the same recipe (version + flags)
# and the zip with its recorded sha256, prints the summary and exits: no apt, no compiler.
# LSB_PG_REBUILD=1 forces a rebuild.
#
# Binaries built here need glibc <= 2.34 (Lambda's Amazon Linux 2023); Debian 13's own packages
# need 2.38. Every file of the layer is checked with `objdump -T` and the build fails otherwise.
# Every binary and library has RUNPATH $ORIGIN/../lib, so the prefix and the layer work wherever
# they are unpacked (their libpq is found next to them); the layer's Debian libraries are found
# through LD_LIBRARY_PATH=<layer>/lib, which the pipeline sets (engines/postgres/pgTool.ts).
#
# Source: `apt-get source -d postgresql-17=<pin>` with a deb-src line for trixie (and
# trixie-security) in /etc/apt/sources.list.d/langsight-backup-postgresql-src.sources, so apt
# checks the files against the signed Sources index. When the index no longer lists the pin (it
# lists only the newest upload) or the mirror does not have its files, the three files are fetched
# from the archive's pool with apt-helper, each checked against a sha256: the .dsc's is pinned
# below, the tarballs' are in the .dsc. In both cases the .dsc's sha256 must equal the pin, and
# `dpkg-source --require-valid-signature -x` checks its OpenPGP signature (debian-keyring) and the
# tarballs' checksums before anything is unpacked. The build uses the upstream tarball as is
# (--skip-patches: Debian's patches are about Debian's file layout).
#
# Environment:
#   LSB_BUILD_CACHE        cache root (default /var/cache/langsight-backup)
#   POSTGRES_DEB_VERSION   another Debian version of postgresql-17 than the pinned one; give
#   POSTGRES_DSC_SHA256    its .dsc's sha256 too (without it: taken from apt's index, and printed)
#   LSB_PG_SOURCE_DIR      a directory already holding the .dsc and its tarballs (no download)
#   LSB_PG_REBUILD=1       ignore the cache
#   LSB_PG_JOBS            make -j (default: nproc)
set -euo pipefail
umask 022

# The pin. To move to a newer upload: `apt-cache showsrc postgresql-17` (after apt-get update with
# the deb-src line above) shows the version and the .dsc's sha256 under Checksums-Sha256.
readonly PG_MAJOR=17
readonly PINNED_DEB_VERSION='17.11-0+deb13u1'
readonly PINNED_DSC_SHA256='bf148ae423a982707c3f60672c3a072ef62b701bd9f5df847d9f4b8c9b3e3b18'
readonly SRC_PACKAGE=postgresql-$PG_MAJOR
readonly MAX_GLIBC=2.34
# glibc's own libraries: Lambda's must be used (a foreign libc next to Lambda's ld.so breaks).
readonly GLIBC_LIBS='^(ld-linux.*|libc|libm|libdl|librt|libpthread|libresolv|libutil|libanl|libnsl|libBrokenLocale|libnss_[a-z]+|libmvec|libthread_db)\.so'
readonly APT_SOURCES_FILE=/etc/apt/sources.list.d/langsight-backup-postgresql-src.sources
readonly POOLS=(
  "http://deb.debian.org/debian/pool/main/p/$SRC_PACKAGE"
  "http://deb.debian.org/debian-security/pool/updates/main/p/$SRC_PACKAGE"
)
# Debian 12 packages the build needs (installed only when missing).
readonly BUILD_DEPS=(build-essential pkg-config bison flex perl libzstd-dev liblz4-dev libssl-dev
  libkrb5-dev libicu-dev zlib1g-dev dpkg-dev bzip2 xz-utils debian-keyring binutils zip)

# The recipe: what makes two builds of the same version differ. Part of the cache key.
# Fixed prefix: PostgreSQL computes share/ and lib/ relative to its binaries, and the RUNPATH is
# relative, so the prefix only names the default paths compiled in, identical on every machine.
readonly PREFIX=/usr/local/pgsql
readonly CONFIGURE_FLAGS=(
  --prefix=$PREFIX
  --without-readline --with-zstd --with-lz4 --with-openssl --with-gssapi --with-icu
  --without-ldap --without-pam --without-libxml --without-systemd --without-perl --without-python
  --without-tcl --without-llvm --without-selinux --disable-nls --disable-debug --enable-rpath
)
readonly CFLAGS_FIXED='-O2 -fstack-protector-strong -fstack-clash-protection -fcf-protection -Wformat -Werror=format-security'
readonly CPPFLAGS_FIXED='-D_FORTIFY_SOURCE=2'
# --as-needed: pg_dump links libzstd, liblz4 and libz only because it uses them, not every LIBS entry.
readonly LDFLAGS_FIXED='-Wl,-z,relro -Wl,-z,now -Wl,--as-needed'
# Where `make install` runs, in src/Makefile's order: the server and what initdb needs (src/include
# installs postgres.bki), libpq, and the client programs tests and the layer use. No docs, contrib,
# ecpg, tests or the other programs (pg_upgrade, pgbench, pg_basebackup, …).
readonly INSTALL_DIRS=(src/timezone src/backend src/backend/utils/mb/conversion_procs src/backend/snowball
  src/include src/interfaces/libpq src/backend/replication/libpqwalreceiver src/backend/replication/pgoutput
  src/pl/plpgsql src/bin/initdb src/bin/pg_ctl src/bin/psql src/bin/pg_dump src/bin/pg_config
  src/bin/pg_controldata src/bin/scripts)
readonly LAYER_TOOLS=(pg_dump pg_restore psql)
readonly RECIPE_REVISION=3
# Our patches to the upstream source, applied in name order (each says why in its own text).
patch_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/patches
mapfile -t PATCHES < <(find "$patch_dir" -maxdepth 1 -name '*.patch' | sort)

die() {
  echo "build-postgres: $*" >&2
  exit 1
}
say() { echo "build-postgres: $*" >&2; }

deb_version=${POSTGRES_DEB_VERSION:-$PINNED_DEB_VERSION}
if [[ $deb_version == "$PINNED_DEB_VERSION" ]]; then
  dsc_sha256=${POSTGRES_DSC_SHA256:-$PINNED_DSC_SHA256}
else
  dsc_sha256=${POSTGRES_DSC_SHA256:-}
fi
[[ $deb_version =~ ^$PG_MAJOR\.[0-9]+-[A-Za-z0-9.+~]+$ ]] || die "POSTGRES_DEB_VERSION=$deb_version is not a Debian version of PostgreSQL $PG_MAJOR (like $PINNED_DEB_VERSION)"
upstream_version=${deb_version%%-*}
dsc_name=${SRC_PACKAGE}_$deb_version.dsc

if [[ -n ${LSB_BUILD_CACHE:-} ]]; then
  cache_root=$LSB_BUILD_CACHE
elif (($(id -u) == 0)); then
  cache_root=/var/cache/langsight-backup
else
  cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/langsight-backup
fi
out=$cache_root/postgresql-$deb_version
zip_name=pgtools-$PG_MAJOR.zip

recipe_id=$(printf '%s\n' "$RECIPE_REVISION" "$deb_version" "$dsc_sha256" "${CONFIGURE_FLAGS[@]}" \
  "$CFLAGS_FIXED" "$CPPFLAGS_FIXED" "$LDFLAGS_FIXED" "${INSTALL_DIRS[@]}" "${LAYER_TOOLS[@]}" \
  "$(cat "${PATCHES[@]}" /dev/null | sha256sum)" |
  sha256sum | cut -c1-16)

# The cache: .complete holds "<recipe> <zip sha256>"; both must match.
cached() {
  [[ -z ${LSB_PG_REBUILD:-} && -f $out/.complete && -f $out/$zip_name && -x $out/server/bin/postgres ]] || return 1
  local recipe zip_sha
  read -r recipe zip_sha <"$out/.complete" || return 1
  [[ $recipe == "$recipe_id" ]] || return 1
  [[ $(sha256sum "$out/$zip_name" | cut -d' ' -f1) == "$zip_sha" ]] || {
    say "$out/$zip_name does not match its recorded sha256: rebuilding"
    return 1
  }
}
if cached; then
  cat "$out/SUMMARY" >&2
  echo "$out"
  exit 0
fi
# --cached-only: say where a finished build is, never start one (tests use this).
[[ ${1:-} == --cached-only ]] && die "PostgreSQL $deb_version is not built yet: run scripts/build-postgres.sh (or scripts/setup.sh)"

# ---- cold path --------------------------------------------------------------------------------
started=$SECONDS
sudo=''
(($(id -u) == 0)) || sudo=sudo
mkdir -p "$cache_root" || die "cannot create the cache directory $cache_root (set LSB_BUILD_CACHE)"
exec 9>"$cache_root/.postgresql-$deb_version.lock"
flock 9 # one build per version at a time; whoever waited finds it built
if cached; then
  cat "$out/SUMMARY" >&2
  echo "$out"
  exit 0
fi
say "building PostgreSQL $upstream_version from Debian's $SRC_PACKAGE $deb_version into $out"
jobs=${LSB_PG_JOBS:-$(nproc)}

# 1. Build dependencies, only those missing.
missing=()
for pkg in "${BUILD_DEPS[@]}"; do
  [[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true) == installed ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  say "apt-get install ${missing[*]}"
  install_deps() { DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
  install_deps || { $sudo apt-get update -qq && install_deps; } || die "could not install ${missing[*]}"
fi

# 2. The source package, verified.
downloads=$cache_root/downloads
mkdir -p "$downloads"
dsc=$downloads/$dsc_name

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
# The files a .dsc names, as "sha256 size name" lines.
dsc_files() { awk '/^Checksums-Sha256:/ {on=1; next} on && /^ / {print $1, $2, $3; next} on {exit}' "$1"; }
have_source() {
  [[ -f $dsc ]] || return 1
  [[ -z $dsc_sha256 || $(sha256_of "$dsc") == "$dsc_sha256" ]] || return 1
  local sum size name
  while read -r sum size name; do
    [[ -f $downloads/$name && $(stat -c %s "$downloads/$name") == "$size" ]] || return 1
  done < <(dsc_files "$dsc")
}
# Files go to a directory apt's unprivileged _apt user can write, then move into downloads/.
fetch_dir() {
  local dir
  dir=$(mktemp -d "$cache_root/.fetch.XXXXXX")
  if id _apt >/dev/null 2>&1 && (($(id -u) == 0)); then chown _apt "$dir"; fi
  echo "$dir"
}
index_versions() { apt-cache showsrc "$SRC_PACKAGE" 2>/dev/null | awk '/^Version:/ {print $2}' | sort -uV | paste -sd' '; }

if [[ -n ${LSB_PG_SOURCE_DIR:-} ]]; then
  [[ -f $LSB_PG_SOURCE_DIR/$dsc_name ]] || die "LSB_PG_SOURCE_DIR=$LSB_PG_SOURCE_DIR holds no $dsc_name"
  cp -f "$LSB_PG_SOURCE_DIR/$dsc_name" "$dsc"
  while read -r _ _ name; do cp -f "$LSB_PG_SOURCE_DIR/$name" "$downloads/$name"; done < <(dsc_files "$dsc")
fi
if ! have_source; then
  # deb-src for Debian 13 (sources only: no trixie binary can be installed through this file).
  wanted_sources="# Written by langsight-backup scripts/build-postgres.sh: Debian 13's source packages only
# (no binaries), to build PostgreSQL $PG_MAJOR on this release. Safe to delete.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
  if [[ ! -f $APT_SOURCES_FILE || $(<"$APT_SOURCES_FILE") != "$wanted_sources" ]]; then
    printf '%s\n' "$wanted_sources" | $sudo tee "$APT_SOURCES_FILE" >/dev/null
  fi
  served=$(index_versions)
  if [[ " $served " != *" $deb_version "* ]]; then
    # Refresh only this file's indexes (quick; leaves the other sources' lists alone).
    $sudo apt-get update -qq -o Dir::Etc::sourcelist="$APT_SOURCES_FILE" -o Dir::Etc::sourceparts=- \
      -o APT::Get::List-Cleanup=0 >/dev/null 2>&1 || say "apt-get update of $APT_SOURCES_FILE failed"
    served=$(index_versions)
  fi
  fetched=$(fetch_dir)
  trap 'rm -rf "$fetched"' EXIT
  if [[ " $served " == *" $deb_version "* ]]; then
    if [[ -z $dsc_sha256 ]]; then
      dsc_sha256=$(apt-get source --print-uris "$SRC_PACKAGE=$deb_version" 2>/dev/null |
        awk -v f="$dsc_name" '$2 == f {sub(/^SHA256:/, "", $4); print $4}')
      say "POSTGRES_DSC_SHA256 not given: apt's index says $dsc_sha256 (pin it)"
    fi
    say "apt-get source -d $SRC_PACKAGE=$deb_version"
    (cd "$fetched" && apt-get source -d -qq "$SRC_PACKAGE=$deb_version" >"$cache_root/.fetch.log" 2>&1) ||
      say "apt-get source failed ($(grep -m1 -E '^E:' "$cache_root/.fetch.log" || tail -1 "$cache_root/.fetch.log")); trying the pool"
  else
    say "trixie's index lists $SRC_PACKAGE ${served:-(nothing)}, not the pinned $deb_version: fetching it from the pool by its pinned sha256"
  fi
  if [[ ! -f $fetched/$dsc_name ]]; then
    [[ -n $dsc_sha256 ]] || die "$SRC_PACKAGE $deb_version is not served by apt (index: ${served:-nothing}) and POSTGRES_DSC_SHA256 is not set"
    # apt-helper downloads like apt (same proxy settings) and rejects a file whose sha256 differs.
    get() { # <file name> <sha256>
      local pool url
      for pool in "${POOLS[@]}"; do
        url=$pool/$(printf '%s' "$1" | sed 's/+/%2b/g')
        /usr/lib/apt/apt-helper -qq download-file "$url" "$fetched/$1" "SHA256:$2" >>"$cache_root/.fetch.log" 2>&1 && return 0
      done
      return 1
    }
    get "$dsc_name" "$dsc_sha256" || die "$SRC_PACKAGE $deb_version cannot be downloaded: trixie's index lists ${served:-nothing}, and
  ${POOLS[*]} do not serve $dsc_name with sha256 $dsc_sha256
  (see $cache_root/.fetch.log).
  Pin a served version: set PINNED_DEB_VERSION and PINNED_DSC_SHA256 in $0 to what
  \`apt-cache showsrc $SRC_PACKAGE\` prints (Version, and the .dsc line of Checksums-Sha256),
  or run with POSTGRES_DEB_VERSION=… POSTGRES_DSC_SHA256=…"
    while read -r sum _ name; do
      get "$name" "$sum" || die "$name (named by $dsc_name) could not be downloaded from ${POOLS[*]}: $(tail -2 "$cache_root/.fetch.log")"
    done < <(dsc_files "$fetched/$dsc_name")
  fi
  [[ -f $fetched/$dsc_name ]] || die "no $dsc_name after downloading"
  actual=$(sha256_of "$fetched/$dsc_name")
  [[ -z $dsc_sha256 || $actual == "$dsc_sha256" ]] || die "$dsc_name has sha256 $actual, the pin is $dsc_sha256"
  dsc_sha256=$actual
  for f in "$fetched"/*; do mv -f "$f" "$downloads/"; done
  rm -rf "$fetched" "$cache_root/.fetch.log"
  have_source || die "the files named by $dsc_name are incomplete in $downloads"
fi
[[ -n $dsc_sha256 ]] || dsc_sha256=$(sha256_of "$dsc")

# 3. Unpack: dpkg-source checks the .dsc's signature against debian-keyring and every file's
#    checksum, and fails on any mismatch. Debian's patches are not applied: upstream as released.
work=$cache_root/.build-postgresql-$deb_version # a fixed path: the build is the same on every run
rm -rf "$work"
mkdir -p "$work"
log=$work/build.log
on_exit() {
  local rc=$?
  if [[ -n ${smoke:-} ]]; then
    [[ ! -f $smoke/data/postmaster.pid ]] || as_server_user "$server/bin/pg_ctl" -D "$smoke/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$smoke"
  fi
  if ((rc != 0)) && [[ -f $log ]]; then
    cp -f "$log" "$cache_root/postgresql-$deb_version.failed.log"
    echo "build-postgres: last lines of the build log ($cache_root/postgresql-$deb_version.failed.log):" >&2
    tail -25 "$log" >&2
  fi
  rm -rf "$work"
}
trap on_exit EXIT
step() { # <name> <command…>: runs a step with its output in the log, timing it
  local name=$1 t0=$SECONDS
  shift
  echo "=== $name: $*" >>"$log"
  "$@" >>"$log" 2>&1 || die "$name failed"
  say "$name ($((SECONDS - t0)) s)"
}
step "verify and unpack $dsc_name" dpkg-source --require-valid-signature -x --skip-patches "$dsc" "$work/src"
grep -qx "PACKAGE_VERSION='$upstream_version'" "$work/src/configure" ||
  die "the source of $deb_version is not PostgreSQL $upstream_version"
for p in "${PATCHES[@]}"; do
  step "apply $(basename "$p")" patch --batch --forward -p1 -d "$work/src" -i "$p"
done
export SOURCE_DATE_EPOCH
SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$work/src/debian/changelog" -STimestamp)
export TZ=UTC LC_ALL=C

# 4. Configure, build, install into a staging directory.
mkdir -p "$work/obj"
(
  cd "$work/obj"
  step configure "$work/src/configure" "${CONFIGURE_FLAGS[@]}" \
    --with-extra-version=" (langsight-backup build of Debian $deb_version)" \
    CFLAGS="$CFLAGS_FIXED -ffile-prefix-map=$work=/build" CPPFLAGS="$CPPFLAGS_FIXED" LDFLAGS="$LDFLAGS_FIXED"
)
stage=$work/stage
# rpathdir: every binary and library finds lib/ relative to itself ($$ is make's escape of $).
# The generated headers first, alone: some directories (src/timezone) do not wait for them under -j.
step "make generated-headers" make -C "$work/obj/src/backend" generated-headers
for dir in "${INSTALL_DIRS[@]}"; do
  step "make -j$jobs install ($dir)" make -C "$work/obj/$dir" -j"$jobs" install DESTDIR="$stage" 'rpathdir=$$ORIGIN/../lib'
done
result=$work/out
mkdir -p "$result"
mv "$stage$PREFIX" "$result/server"
server=$result/server
readelf -d "$server/bin/pg_dump" | grep -q 'RUNPATH.*\[\$ORIGIN/\.\./lib\]' || die "pg_dump's RUNPATH is not \$ORIGIN/../lib"

# 5. The layer: the client tools, libpq and every library they load except glibc's own.
layer=$result/layer
mkdir -p "$layer/bin" "$layer/lib"
for tool in "${LAYER_TOOLS[@]}"; do cp "$server/bin/$tool" "$layer/bin/$tool"; done
cp -L "$server/lib/libpq.so.5" "$layer/lib/libpq.so.5"
for tool in "${LAYER_TOOLS[@]}"; do
  ldd_out=$(env -i LD_LIBRARY_PATH="$layer/lib" ldd "$layer/bin/$tool") || die "ldd $tool failed"
  ! grep -q 'not found' <<<"$ldd_out" || die "$tool needs libraries this machine does not have: $(grep 'not found' <<<"$ldd_out")"
  while read -r soname arrow path _; do
    [[ $arrow == '=>' && $path == /* ]] || continue
    [[ $soname =~ $GLIBC_LIBS || -e $layer/lib/$soname ]] && continue
    cp -L "$path" "$layer/lib/$soname"
  done <<<"$ldd_out"
done
chmod 0755 "$layer/bin/"* && chmod 0644 "$layer/lib/"*
# What the loader maps with nothing but the layer's library path: each non-glibc library from it.
for tool in "${LAYER_TOOLS[@]}"; do
  while read -r soname arrow path _; do
    [[ $arrow == '=>' && $path == /* ]] || continue
    if [[ $soname =~ $GLIBC_LIBS ]]; then
      [[ $path != "$layer"/* ]] || die "$tool would load glibc's $soname from the layer"
    else
      [[ $path == "$layer/lib/$soname" ]] || die "$tool would load $soname from $path, not the layer"
    fi
  done < <(env -i LD_LIBRARY_PATH="$layer/lib" /lib64/ld-linux-x86-64.so.2 --list "$layer/bin/$tool")
done

# 6. No file of the layer may need a glibc newer than Lambda's (undefined symbols, objdump -T).
glibc_needs() { # <file> → "version symbol" lines
  objdump -T "$1" | awk '/\*UND\*/ && match($0, /\(GLIBC_[0-9.]+\)/) {print substr($0, RSTART + 7, RLENGTH - 8), $NF}'
}
too_new=''
max_glibc=0
for f in "$layer/bin/"* "$layer/lib/"*; do
  needs=$(glibc_needs "$f")
  [[ -n $needs ]] || continue
  file_max=$(cut -d' ' -f1 <<<"$needs" | sort -V | tail -1)
  max_glibc=$(printf '%s\n%s\n' "$max_glibc" "$file_max" | sort -V | tail -1)
  if [[ $(printf '%s\n%s\n' "$MAX_GLIBC" "$file_max" | sort -V | tail -1) != "$MAX_GLIBC" ]]; then
    symbols=$(while read -r v sym; do
      [[ $(printf '%s\n%s\n' "$MAX_GLIBC" "$v" | sort -V | tail -1) == "$MAX_GLIBC" ]] || echo "$sym@GLIBC_$v"
    done <<<"$needs" | sort -u | tr '\n' ' ')
    too_new+="  ${f#"$layer/"} needs ${symbols% }"$'\n'
  fi
done
[[ -z $too_new ]] || die "layer files need a glibc newer than Lambda's $MAX_GLIBC:
$too_new"
server_max_glibc=$(for f in "$server/bin/"*; do glibc_needs "$f"; done | cut -d' ' -f1 | sort -uV | tail -1)

# 7. The tools run with an empty environment and only the layer's libraries, and compress with
#    gzip, lz4 and zstd (pg_dump checks the method before it connects: "this build does not
#    support compression with …" otherwise).
run_layer() { env -i LD_LIBRARY_PATH="$layer/lib" "$@"; }
version=$(run_layer "$layer/bin/pg_dump" --version) || die "the layer's pg_dump does not run: $version"
[[ $version == "pg_dump (PostgreSQL) $upstream_version "* ]] || die "pg_dump reports '$version', expected $upstream_version"
for tool in pg_restore psql; do
  v=$(run_layer "$layer/bin/$tool" --version) || die "the layer's $tool does not run"
  [[ $v == "$tool (PostgreSQL) $upstream_version "* ]] || die "$tool reports '$v'"
done
run_layer "$layer/bin/pg_dump" --help | grep -q -- '--compress=METHOD' || die "pg_dump --help lists no --compress=METHOD"
for method in gzip lz4 zstd; do
  readelf -d "$layer/bin/pg_dump" | grep -q "NEEDED.*lib$([[ $method == gzip ]] && echo z || echo "$method")\.so" ||
    die "pg_dump does not link the $method library"
  probe=$(run_layer "$layer/bin/pg_dump" -Fc -Z "$method:1" --dbname="host=$work/no-server connect_timeout=1" 2>&1 || true)
  [[ $probe != *"does not support compression"* && $probe == *"connection to server"* ]] ||
    die "pg_dump -Z $method is refused: $probe"
done
echo "$version" >"$layer/VERSION"

# 8. The prefix runs a server, and the layer's tools dump it with zstd and read the archive back:
#    initdb, pg_ctl start on a Unix socket in the build directory only, pg_dump -Fc -Z zstd,
#    pg_restore --list, stop. initdb refuses root: as root the server runs as postgres (or nobody).
server_user=''
if (($(id -u) == 0)); then
  server_user=nobody
  id postgres >/dev/null 2>&1 && server_user=postgres
fi
as_server_user() { if [[ -n $server_user ]]; then runuser -u "$server_user" -- "$@"; else "$@"; fi; }
smoke=$(mktemp -d /tmp/lsb-pgsmoke.XXXXXX) # short: a socket path has at most 107 bytes
chmod 0755 "$smoke"
[[ -z $server_user ]] || chown "$server_user" "$smoke"
smoke_test() { # (set -e does not apply inside a function called from step's ||: each line checks)
  as_server_user "$server/bin/initdb" -D "$smoke/data" -U postgres -A trust -E UTF8 --locale=C --no-sync || return 1
  as_server_user "$server/bin/pg_ctl" -D "$smoke/data" -l "$smoke/server.log" -w -t 60 \
    -o "-c listen_addresses='' -c unix_socket_directories='$smoke' -c fsync=off" start || return 1
  local conn="host=$smoke user=postgres dbname=postgres"
  env -i "$server/bin/psql" -X -q -v ON_ERROR_STOP=1 -d "$conn" \
    -c "CREATE TABLE smoke AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000) g" || return 1
  run_layer "$layer/bin/pg_dump" -Fc -Z zstd:3 -d "$conn" -f "$smoke/smoke.dump" || return 1
  run_layer "$layer/bin/pg_restore" --list "$smoke/smoke.dump" >"$smoke/smoke.list" || return 1
  grep -q 'Compression: zstd' "$smoke/smoke.list" || return 1
  grep -q 'TABLE DATA public smoke postgres' "$smoke/smoke.list" || return 1
  as_server_user "$server/bin/pg_ctl" -D "$smoke/data" -m fast -w stop
}
step "smoke test: initdb, pg_ctl start, pg_dump -Fc -Z zstd, pg_restore --list" smoke_test
rm -rf "$smoke"
smoke=''

# 9. The zip: sorted entries, fixed times (the source's changelog date), no extra attributes.
find "$layer" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
(cd "$layer" && find bin lib VERSION | sort | zip -q -X -@ "$result/$zip_name")
zip_sha256=$(sha256_of "$result/$zip_name")
zip_kib=$(du -k "$result/$zip_name" | cut -f1)

cat >"$result/BUILD-INFO" <<EOF
postgresql $upstream_version from Debian source package $SRC_PACKAGE $deb_version
dsc_sha256 $dsc_sha256
$(dsc_files "$dsc" | awk '{print "source_sha256 " $1 " " $3}')
recipe $recipe_id
patches $(for p in "${PATCHES[@]}"; do printf '%s ' "$(basename "$p")"; done)
configure ${CONFIGURE_FLAGS[*]} --with-extra-version=" (langsight-backup build of Debian $deb_version)"
CFLAGS $CFLAGS_FIXED -ffile-prefix-map=<build>=/build
CPPFLAGS $CPPFLAGS_FIXED
LDFLAGS $LDFLAGS_FIXED
make install in ${INSTALL_DIRS[*]} with rpathdir=\$ORIGIN/../lib
built_on $(. /etc/os-release && echo "$PRETTY_NAME"), $(ldd --version | head -1), gcc $(gcc -dumpfullversion)
layer_max_glibc GLIBC_$max_glibc
server_max_glibc GLIBC_$server_max_glibc
layer_files $(cd "$layer" && find bin lib -type f | sort | tr '\n' ' ')
zip_sha256 $zip_sha256
EOF
echo "build-postgres: PostgreSQL $upstream_version (Debian source $deb_version) server=$out/server layer=$out/layer zip=$out/$zip_name ($zip_kib KiB, $(ls "$layer/lib" | wc -l) libraries, max GLIBC_$max_glibc) sha256=$zip_sha256" >"$result/SUMMARY"
echo "$recipe_id $zip_sha256" >"$result/.complete"

# 10. Into place: the old directory (if any) is replaced in two renames.
rm -rf "$out.old"
[[ ! -e $out ]] || mv "$out" "$out.old"
mv "$result" "$out"
rm -rf "$out.old"
say "built in $((SECONDS - started)) s"
cat "$out/SUMMARY" >&2
echo "$out"
