#!/usr/bin/env bash
# Builds the test image `jdos-busybox:latest` without a registry: a rootfs made
# of Debian's statically linked busybox (`busybox-static`) and its applet
# symlinks, `docker import`ed as an image. Tests, examples and `jdos dev` use
# it (busybox `httpd` is the demo web app; `nc`, `wget`, `sleep`, `ip` help
# tests probe each other).
#
# Usage: scripts/build-test-image.sh [--force]
#   Fast no-op when the image exists with the current recipe version; --force
#   rebuilds. Safe to run from several tests at once (serialized by flock).
#   Env: JDOS_TEST_IMAGE (default jdos-busybox:latest).
set -euo pipefail

IMAGE="${JDOS_TEST_IMAGE:-jdos-busybox:latest}"
# Bump when the rootfs recipe below changes, so existing images are rebuilt.
RECIPE_VERSION=1
LABEL_KEY=io.jdos.test-image.recipe

force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h | --help)
      sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "build-test-image: unknown argument '$arg' (try --help)" >&2
      exit 2
      ;;
  esac
done

die() {
  echo "build-test-image: $*" >&2
  exit 1
}

command -v docker >/dev/null 2>&1 || die "the docker CLI is not installed"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
  die "the Docker engine does not answer: start dockerd (or check DOCKER_HOST) and retry"

current_recipe() {
  docker image inspect --format "{{ index .Config.Labels \"$LABEL_KEY\" }}" "$IMAGE" 2>/dev/null || true
}

# Fast path, before taking the lock: nothing to do.
if [ "$force" = 0 ] && [ "$(current_recipe)" = "$RECIPE_VERSION" ]; then
  exit 0
fi

# Serialize concurrent builds (parallel test binaries call this script).
lock="${TMPDIR:-/tmp}/jdos-build-test-image.lock"
exec 9>"$lock"
flock 9
if [ "$force" = 0 ] && [ "$(current_recipe)" = "$RECIPE_VERSION" ]; then
  exit 0 # another process built it while we waited
fi

is_static() {
  # A static binary has no program interpreter; ldd says so in several ways.
  [ -x "$1" ] && ! LC_ALL=C ldd "$1" 2>/dev/null | grep -q '=>'
}

busybox_bin=""
for candidate in /bin/busybox /usr/bin/busybox; do
  if is_static "$candidate"; then
    busybox_bin="$candidate"
    break
  fi
done
if [ -z "$busybox_bin" ]; then
  [ "$(id -u)" = 0 ] || die "busybox-static is missing: run 'sudo apt-get install busybox-static' and retry"
  echo "build-test-image: installing Debian's busybox-static" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends busybox-static >/dev/null
  for candidate in /bin/busybox /usr/bin/busybox; do
    if is_static "$candidate"; then
      busybox_bin="$candidate"
      break
    fi
  done
  [ -n "$busybox_bin" ] || die "busybox-static was installed but no static /bin/busybox was found"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/jdos-busybox.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,proc,sys,dev,run,var/www,var/log,www,data}
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
install -m 0755 "$busybox_bin" "$root/bin/busybox"

# Applet symlinks at their canonical paths (usr/bin/wget, sbin/ip, …); fall
# back to /bin for a busybox without --list-full.
if "$busybox_bin" --list-full >/dev/null 2>&1; then
  while read -r path; do
    [ -n "$path" ] || continue
    [ "$path" = bin/busybox ] && continue
    mkdir -p "$root/$(dirname "$path")"
    ln -sf /bin/busybox "$root/$path"
  done < <("$busybox_bin" --list-full)
else
  while read -r applet; do
    [ -n "$applet" ] && [ "$applet" != busybox ] && ln -sf /bin/busybox "$root/bin/$applet"
  done < <("$busybox_bin" --list)
fi
for applet in sh httpd nc sleep wget ip; do
  [ -e "$root/bin/$applet" ] || [ -e "$root/sbin/$applet" ] ||
    [ -e "$root/usr/bin/$applet" ] || [ -e "$root/usr/sbin/$applet" ] ||
    die "this busybox has no '$applet' applet; the tests need it"
done

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
www:x:33:33:www:/var/www:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
www:x:33:
nogroup:x:65534:
EOF
echo "jdos-busybox" >"$root/etc/hostname"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
cat >"$root/www/index.html" <<'EOF'
<!doctype html>
<title>jdos</title>
<p>hello from jdos-busybox</p>
EOF
cp "$root/www/index.html" "$root/var/www/index.html"

old_id="$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
tar --numeric-owner --owner=0 --group=0 -C "$root" -cf - . |
  docker import \
    --change 'CMD ["sh"]' \
    --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'WORKDIR /' \
    --change "LABEL $LABEL_KEY=$RECIPE_VERSION" \
    --message "jdos test image from busybox-static" \
    - "$IMAGE" >/dev/null

# The previous build is now untagged; drop it unless a container still uses it.
new_id="$(docker image inspect --format '{{.Id}}' "$IMAGE")"
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  docker image rm "$old_id" >/dev/null 2>&1 || true
fi

echo "build-test-image: built $IMAGE ($("$busybox_bin" 2>&1 | head -n1 | cut -d' ' -f1-2))" >&2
