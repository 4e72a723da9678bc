#!/usr/bin/env bash
# Install edge-fer as a systemd appliance on Raspberry Pi OS (Bookworm, aarch64).
#
#   sudo deploy/install.sh                 install (or update) and start
#   sudo deploy/install.sh --uninstall     remove units, venv, code and user (keeps edited config)
#   deploy/install.sh --dry-run            print every step, change nothing
#   deploy/install.sh --prefix /tmp/root   install into a throwaway root (no apt, user, systemctl)
#   sudo deploy/install.sh --console-window also allow the SDL window on the HDMI console
#                                          (input/tty groups; needed only for display.mode: window
#                                          without a desktop)
#   sudo deploy/install.sh --image         install into the running root as an image build would
#                                          (chroot, pi-gen, emulation): no python3-picamera2 (it is
#                                          in the Raspberry Pi archive only) and the units are
#                                          enabled, not started (systemd is not running)
#   sudo deploy/install.sh --instance cam0 --instance cam1
#                                          one daemon per camera (edge-fer@cam0, edge-fer@cam1),
#                                          each with /etc/edge-fer/NAME.yaml (camN: camera.index N),
#                                          instead of the single edge-fer.service
#
# Idempotent: running it again updates the code and units and keeps /etc/edge-fer/*.yaml.
set -euo pipefail

PREFIX=""
DRY_RUN=0
UNINSTALL=0
WITH_VENV=1
CONSOLE_WINDOW=0
IMAGE=0
INSTANCES=()
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="${2:?--prefix needs a folder}"; shift 2 ;;
    --prefix=*) PREFIX="${1#--prefix=}"; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --no-venv) WITH_VENV=0; shift ;;
    --console-window) CONSOLE_WINDOW=1; shift ;;
    --image) IMAGE=1; shift ;;
    --instance) INSTANCES+=("${2:?--instance needs a name, e.g. cam0}"); shift 2 ;;
    --instance=*) INSTANCES+=("${1#--instance=}"); shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for name in "${INSTANCES[@]}"; do
  # The daemon's own rule (edge_fer/config/root.py INSTANCE_PATTERN): it is part of file names,
  # unit names, MQTT topics and a Prometheus label.
  if ! [[ "$name" =~ ^[a-z0-9][a-z0-9_-]{0,31}$ ]]; then
    echo "install.sh: instance name '$name' is not valid; use 1-32 of a-z, 0-9, _ and -, starting with a letter or digit (e.g. cam0)" >&2
    exit 2
  fi
done
PREFIX="${PREFIX%/}"
APP="$PREFIX/opt/edge-fer"
ETC="$PREFIX/etc/edge-fer"
UNITS="$PREFIX/etc/systemd/system"
SYSTEM=$([ -z "$PREFIX" ] && echo 1 || echo 0)   # touch apt, users and systemd only on /
UNIT_FILES=(edge-fer.service edge-fer@.service edge-fer-monitor.service
            edge-fer-monitor-snapshot.service edge-fer-monitor-snapshot.timer)

run() {
  if [ "$DRY_RUN" = 1 ]; then printf '+ %s\n' "$*"; else "$@"; fi
}
say() { printf '==> %s\n' "$*"; }

if [ "$SYSTEM" = 1 ] && [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (sudo), or use --dry-run / --prefix DIR" >&2
  exit 1
fi

do_uninstall() {
  if [ "$SYSTEM" = 1 ]; then
    say "stopping and disabling units"
    run systemctl disable --now edge-fer.service edge-fer-monitor.service \
      edge-fer-monitor-snapshot.timer 'edge-fer@*.service' 2>/dev/null || true
  fi
  say "removing units from $UNITS"
  for u in "${UNIT_FILES[@]}"; do run rm -f "$UNITS/$u"; done
  run rm -rf "$UNITS/edge-fer.service.d"
  [ "$SYSTEM" = 1 ] && run systemctl daemon-reload
  say "removing $APP"
  run rm -rf "$APP"
  if [ -f "$ETC/config.yaml" ] && cmp -s "$ETC/config.yaml" "$SRC/deploy/config.example.yaml"; then
    say "removing unmodified $ETC/config.yaml"
    run rm -f "$ETC/config.yaml"
    run rmdir "$ETC" 2>/dev/null || true
  elif [ -f "$ETC/config.yaml" ]; then
    say "keeping your edited $ETC/config.yaml (delete it by hand if you want it gone)"
  fi
  if [ "$SYSTEM" = 1 ] && id edge-fer >/dev/null 2>&1; then
    say "removing user edge-fer"
    run userdel edge-fer
  fi
  say "uninstalled"
}

check_password_files() {
  # The daemon refuses a password file that others can read; say so now, with the fix.
  local conf file mode owner
  for conf in "$ETC"/*.yaml; do
    [ -f "$conf" ] || continue
    while read -r file; do
      [ -n "$file" ] || continue
      if [ ! -f "$file" ]; then
        say "WARNING: $conf names password_file $file, which does not exist"
        continue
      fi
      mode=$(stat -c %a "$file"); owner=$(stat -c %U "$file")
      if [ "$mode" != 600 ] && [ "$mode" != 400 ]; then
        say "WARNING: $file (password_file in $conf) has mode $mode; the daemon refuses it: chown edge-fer $file && chmod 600 $file"
      elif [ "$SYSTEM" = 1 ] && [ "$owner" != edge-fer ]; then
        say "WARNING: $file (password_file in $conf) is owned by $owner; the service cannot read it: chown edge-fer $file"
      fi
    done < <(sed -n 's/^[[:space:]]*password_file:[[:space:]]*\([^#[:space:]]*\).*/\1/p' "$conf" | tr -d "\"'" | grep -v '^null$' || true)
  done
}

do_install() {
  if [ "$SYSTEM" = 1 ]; then
    say "installing apt packages (picamera2, systemd bindings, venv, C++ compiler)"
    PICAMERA2=$([ "$IMAGE" = 1 ] && echo "" || echo python3-picamera2)
    run apt-get update
    run apt-get install -y python3-venv python3-pip $PICAMERA2 python3-systemd libcap-dev g++
    if ! id edge-fer >/dev/null 2>&1; then
      say "creating system user edge-fer"
      run useradd --system --home-dir /var/lib/edge-fer --shell /usr/sbin/nologin edge-fer
    fi
    GROUPS_WANTED="video,render"
    [ "$CONSOLE_WINDOW" = 1 ] && GROUPS_WANTED="$GROUPS_WANTED,input,tty"
    # Raspberry Pi OS has them all; a bare Debian root gets `render` from udev only later.
    for g in ${GROUPS_WANTED//,/ }; do
      getent group "$g" >/dev/null || run groupadd --system "$g"
    done
    run usermod -a -G "$GROUPS_WANTED" edge-fer
  fi
  say "copying $SRC to $APP"
  run mkdir -p "$APP"
  # Replace the code but keep the venv, so an update doesn't reinstall torch.
  run find "$APP" -mindepth 1 -maxdepth 1 ! -name venv -exec rm -rf {} +
  # Root-owned whatever the checkout's owner: the service must not run code its user (or the
  # user who cloned) can change, and a later root run must not execute a user-writable venv.
  # Only what git tracks: no venvs, runs, credentials or other stray files of the checkout.
  # (safe.directory: root reading a checkout a user owns.)
  if git -c safe.directory="$SRC" -C "$SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    if [ "$DRY_RUN" = 1 ]; then
      printf '+ git -C %s ls-files -z | tar --null -T - -cf - | tar -C %s --no-same-owner -xf -\n' "$SRC" "$APP"
    else
      git -c safe.directory="$SRC" -C "$SRC" ls-files -z |
        (cd "$SRC" && tar --null -T - --ignore-failed-read -cf -) | tar -C "$APP" --no-same-owner -xf -
    fi
  else  # an exported tree (a release tarball, the arm64 check's copy): all of it but builds
    say "$SRC is not a git checkout: copying the whole tree except venvs and build output"
    if [ "$DRY_RUN" = 1 ]; then
      printf '+ tar -C %s -cf - . | tar -C %s --no-same-owner -xf -\n' "$SRC" "$APP"
    else
      tar -C "$SRC" --exclude=.git --exclude=.venv --exclude=.venv-ha --exclude=./venv --exclude=./runs \
        --exclude=__pycache__ --exclude='*.egg-info' --exclude=_build --exclude=.device \
        --exclude=build -cf - . | tar -C "$APP" --no-same-owner -xf -
    fi
  fi
  if [ "$SYSTEM" = 1 ]; then
    run chown -R root:root "$APP"
    run chmod -R go-w "$APP"
  fi
  if [ "$WITH_VENV" = 1 ]; then
    # --system-site-packages: picamera2 and systemd come from apt, not PyPI.
    say "creating venv $APP/venv and installing edge-fer"
    run python3 -m venv --system-site-packages "$APP/venv"
    # A regular (non-editable) install: the package, its model and runner source live in the
    # venv's site-packages, owned by root.
    # The constraints keep apt's numpy 1.24 (picamera2's simplejpeg is built against it; a
    # numpy 2 in the venv breaks `import picamera2`).
    run "$APP/venv/bin/pip" install -c "$APP/deploy/constraints-pi.txt" "$APP[display]"
    # The runner needs only the executorch wheel's C++ libraries and headers: none of its
    # Python dependencies, and no torch (whose aarch64 wheel on PyPI pulls CUDA).
    run "$APP/venv/bin/pip" install --no-deps -r "$APP/deploy/requirements-runtime.txt"
    # The torch-free ExecuTorch runner: built now, because the service's /opt is read-only.
    say "building the ExecuTorch runner"
    run "$APP/venv/bin/edge-fer-build-runtime"
  fi
  run mkdir -p "$ETC"
  if [ -f "$ETC/config.yaml" ]; then
    say "keeping existing $ETC/config.yaml"
  else
    say "installing example config to $ETC/config.yaml"
    run install -m 0640 "$SRC/deploy/config.example.yaml" "$ETC/config.yaml"
  fi
  if [ "$SYSTEM" = 1 ]; then
    run chgrp edge-fer "$ETC/config.yaml"  # readable by the service, writable by root only
  fi
  first=1
  for name in "${INSTANCES[@]}"; do
    if [ -f "$ETC/$name.yaml" ]; then
      say "keeping existing $ETC/$name.yaml"
    else
      say "installing $ETC/$name.yaml for edge-fer@$name (edit its source / camera.index)"
      index=$([[ "$name" =~ ^cam([0-9]+)$ ]] && echo "${BASH_REMATCH[1]}" || echo 0)
      # One HDMI screen: the first instance draws on it, the others run headless.
      mode=$([ "$first" = 1 ] && echo auto || echo none)
      edits=(-e "s/^  index: 0 /  index: $index /" -e "s/^  mode: auto /  mode: $mode /")
      if [ "$DRY_RUN" = 1 ]; then
        printf '+ sed %s config.example.yaml > %s\n' "${edits[*]}" "$ETC/$name.yaml"
      else
        sed "${edits[@]}" "$SRC/deploy/config.example.yaml" > "$ETC/$name.yaml"
        chmod 0640 "$ETC/$name.yaml"
      fi
    fi
    first=0
    [ "$SYSTEM" = 1 ] && run chgrp edge-fer "$ETC/$name.yaml"
  done
  check_password_files
  say "installing systemd units to $UNITS"
  run mkdir -p "$UNITS"
  for u in "${UNIT_FILES[@]}"; do run install -m 0644 "$SRC/systemd/$u" "$UNITS/$u"; done
  if [ "$CONSOLE_WINDOW" = 1 ]; then
    run mkdir -p "$UNITS/edge-fer.service.d"
    run install -m 0644 "$SRC/systemd/edge-fer.service.d/console-window.conf" \
      "$UNITS/edge-fer.service.d/console-window.conf"
  else
    run rm -f "$UNITS/edge-fer.service.d/console-window.conf"
  fi
  DAEMONS=(edge-fer.service)
  if [ "${#INSTANCES[@]}" -gt 0 ]; then
    DAEMONS=()
    for name in "${INSTANCES[@]}"; do DAEMONS+=("edge-fer@$name.service"); done
  fi
  if [ "$SYSTEM" = 1 ] && [ "${#INSTANCES[@]}" -gt 0 ]; then
    # One camera, one process: the single service would hold camera 0 too.
    run systemctl disable --now edge-fer.service 2>/dev/null || true
  fi
  if [ "$SYSTEM" = 1 ] && [ "$IMAGE" = 1 ]; then
    run systemctl enable "${DAEMONS[@]}" edge-fer-monitor-snapshot.timer
    say "done (image: units enabled, they start on the next boot)"
  elif [ "$SYSTEM" = 1 ]; then
    run systemctl daemon-reload
    run systemctl enable --now "${DAEMONS[@]}" edge-fer-monitor-snapshot.timer
    say "done: journalctl -u ${DAEMONS[0]%.service} -f   shows the daemon; edge-fer-monitor --seconds 10"
  else
    say "done (prefix $PREFIX: apt, user and systemctl steps skipped)"
  fi
}

if [ "$UNINSTALL" = 1 ]; then do_uninstall; else do_install; fi
