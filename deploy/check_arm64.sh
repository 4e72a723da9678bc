#!/usr/bin/env bash
# Install edge-fer the way deploy/install.sh does on a Raspberry Pi, in an emulated Debian
# bookworm arm64 root (qemu-user), and check that it works there.
#
#   sudo deploy/check_arm64.sh              run every step, print one table (step, result, seconds)
#   sudo deploy/check_arm64.sh --rebuild    also rebuild the cached arm64 root first
#
# Needs: root (chroot, mounts), mmdebstrap, qemu-user-static with binfmt_misc (Debian packages:
#   sudo apt-get install mmdebstrap qemu-user-static binfmt-support arch-test)
# and the package registries (Debian's archive, PyPI). FER2013's PublicTest (for the demo video)
# comes from $EDGE_FER_DATA or ../shared/datasets/fer2013.
#
# The bare root is built once and cached in build/arm64/ (git-ignored); every run unpacks it
# afresh, so each install starts from a clean bookworm. Pip downloads are cached there too.
# Emulated speed says nothing about a Pi's: no timing here is reported as Pi speed.
# Results: build/arm64/out/ (table.md, steps.json, every step's log, both daemons' events and reports).
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${EDGE_FER_ARM64_DIR:-$SRC/build/arm64}"
DATA="${EDGE_FER_DATA:-$SRC/../shared/datasets/fer2013}"
FRAMES="${EDGE_FER_ARM64_FRAMES:-300}"
HOST_PYTHON="${EDGE_FER_HOST_PYTHON:-$SRC/.venv/bin/python}"
BASE="$WORK/bookworm-arm64.tar"
ROOT="$WORK/root"
OUT="$WORK/out"
REBUILD=0
# What Raspberry Pi OS Lite has (it ships picamera2 and so numpy) that a minbase root lacks;
# install.sh installs the rest (venv, pip, g++, ...), so its time includes that.
# python3-pywt stands in for picamera2's numpy-built extensions (simplejpeg is in the Raspberry
# Pi archive only): it must still import from the venv.
PACKAGES=python3,python3-numpy,python3-pywt,systemd,ca-certificates,procps

while [ $# -gt 0 ]; do
  case "$1" in
    --rebuild) REBUILD=1; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "check_arm64.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

fail() { echo "check_arm64.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "run as root (sudo): it needs chroot and mounts"
command -v mmdebstrap >/dev/null || fail "mmdebstrap is missing: sudo apt-get install mmdebstrap"
[ -e /usr/bin/qemu-aarch64-static ] || fail "qemu-aarch64-static is missing: sudo apt-get install qemu-user-static"
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  [ -e /proc/sys/fs/binfmt_misc/register ] ||
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] ||
    fail "arm64 binaries cannot run here (no binfmt_misc entry for qemu-aarch64): sudo apt-get install binfmt-support qemu-user-static"
fi
[ -d "$DATA/test" ] || fail "FER2013 not found at $DATA (set EDGE_FER_DATA): the demo video is built from it"

mkdir -p "$WORK" "$WORK/pip-cache"
rm -rf "$OUT" && mkdir -p "$OUT"
ROWS=()
JSON_ROWS=()
STEP_PID=""

unmount_root() {  # everything mounted under the root, innermost first
  local mnt
  for mnt in $(awk -v r="$ROOT/" 'index($2, r) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount -l "$mnt" 2>/dev/null || true
  done
}
cleanup() {
  [ -n "$STEP_PID" ] && kill -- -"$STEP_PID" 2>/dev/null
  unmount_root
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bind() {  # bind SRC DEST [ro]
  mkdir -p "$2"
  mount --bind "$1" "$2"
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}

# This host's CA bundle goes in beside the root's own: where TLS is re-signed by a proxy, pip
# inside would otherwise fail every download (a Pi on an open network does not need it).
HOST_CA=/etc/ssl/certs/host-ca-certificates.crt
# The Pi 5's CPU. qemu's default (`max`: SVE, SME, i8mm, ...) sends XNNPACK down int8 kernels
# that come out wrong under qemu 7.2 (every face the same label); a Cortex-A76 has none of them.
QEMU_CPU="${EDGE_FER_QEMU_CPU:-cortex-a76}"
in_root() {
  chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_CERT="$HOST_CA" SSL_CERT_FILE="$HOST_CA" REQUESTS_CA_BUNDLE="$HOST_CA" \
    QEMU_CPU="$QEMU_CPU" "$@"
}

# step NAME COMMAND...: run it with its output in $OUT/NAME.log; record result and seconds.
# A failed step ends the check (later steps need it) after printing the table so far.
step() {
  local name="$1"; shift
  local t0 secs detail rc=0
  printf '==> %s\n' "$name" >&2
  t0=$(date +%s.%N)
  # In the background so that `set -e` holds inside the step (it is off in an `if` test).
  set -m
  ( set -e; "$@" ) >"$OUT/$name.log" 2>&1 &
  STEP_PID=$!
  set +m
  wait "$STEP_PID" || rc=$?
  STEP_PID=""
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  detail="$(grep -v '^\s*$' "$OUT/$name.log" | tail -n 1 | tr -d '\r|' | cut -c1-120)"
  if [ "$rc" = 0 ]; then
    ROWS+=("| $name | ok: ${detail:-done} | $secs |")
    JSON_ROWS+=("{\"step\": \"$name\", \"ok\": true, \"seconds\": $secs}")
  else
    ROWS+=("| $name | FAILED (exit $rc): $detail — log: $OUT/$name.log | $secs |")
    JSON_ROWS+=("{\"step\": \"$name\", \"ok\": false, \"seconds\": $secs}")
    table
    exit 1
  fi
}

table() {
  {
    echo "| step | result | seconds |"
    echo "|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
  } | tee "$OUT/table.md"
  printf '{"frames": %s, "steps": [%s]}\n' "$FRAMES" "$(IFS=,; echo "${JSON_ROWS[*]}")" >"$OUT/steps.json"
}

bootstrap() {
  if [ "$REBUILD" = 0 ] && [ -f "$BASE" ] && [ -s "$BASE" ]; then
    echo "cached $(du -h "$BASE" | cut -f1) root from $(date -r "$BASE" +%F)"
    return
  fi
  local mirror=()
  [ -n "${EDGE_FER_ARM64_MIRROR:-}" ] && mirror=("$EDGE_FER_ARM64_MIRROR")
  mmdebstrap --arch=arm64 --variant=minbase --format=tar --include="$PACKAGES" bookworm "$BASE.partial" \
    "${mirror[@]}"
  mv "$BASE.partial" "$BASE"
  echo "built $(du -h "$BASE" | cut -f1) bookworm arm64 root"
}

unpack() {
  unmount_root
  rm -rf --one-file-system "$ROOT" && mkdir -p "$ROOT"
  tar -C "$ROOT" --numeric-owner -xf "$BASE"
  bind /proc "$ROOT/proc"
  bind /sys "$ROOT/sys"
  bind /dev "$ROOT/dev"
  bind /dev/pts "$ROOT/dev/pts"
  mkdir -p "$ROOT/run/edge-fer"
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
  mkdir -p "$ROOT/etc/ssl/certs"
  cp -L "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$ROOT$HOST_CA"
  bind "$WORK/pip-cache" "$ROOT/root/.cache/pip"
  bind "$DATA" "$ROOT/data/fer2013" ro
  bind "$OUT" "$ROOT/out"
  echo "$(in_root uname -m) root: $(in_root python3 --version), numpy $(in_root python3 -c 'import numpy; print(numpy.__version__)')"
}

copy_checkout() {
  mkdir -p "$ROOT/src/edge-fer"
  # Tracked and new files, as a clone would have them: no venv, runs, builds or .git.
  git -C "$SRC" ls-files -z --cached --others --exclude-standard |
    (cd "$SRC" && tar --null -T - --ignore-failed-read -cf -) | tar -C "$ROOT/src/edge-fer" -xf -
  echo "$(find "$ROOT/src/edge-fer" -type f | wc -l) files"
}

install_edge_fer() {
  in_root env DEBIAN_FRONTEND=noninteractive /src/edge-fer/deploy/install.sh --image
}

check_runner() {
  local lib
  lib=$(in_root /opt/edge-fer/venv/bin/python -c \
    'from edge_fer.native.build import library_path; print(library_path())')
  [ -f "$ROOT$lib" ] || { echo "no runner at $lib"; return 1; }
  file -b "$ROOT$lib" | grep -q "ARM aarch64" || { echo "runner is not aarch64: $(file -b "$ROOT$lib")"; return 1; }
  # Imports in the venv: picamera2's numpy-built stand-in, the runtime without torch.
  in_root /opt/edge-fer/venv/bin/python -c '
import importlib.util, numpy, pywt, cv2
assert importlib.util.find_spec("torch") is None, "torch is installed: the Pi install must be torch-free"
print(f"numpy {numpy.__version__} (apt), opencv {cv2.__version__}, pywt imports, no torch")'
  echo "aarch64 runner $(basename "$lib")"
}

demo_video() {
  in_root /opt/edge-fer/venv/bin/python /opt/edge-fer/tools/make_demo_video.py \
    --data /data/fer2013 --frames "$FRAMES" --out /out/demo.mkv
}

DAEMON_ARGS=(--source file:/out/demo.mkv --display none --no-loop --max-frames "$FRAMES"
  --runtime native --threads 2 --console off --config /etc/edge-fer/config.yaml)

run_daemon() {
  chmod 0777 "$OUT"
  in_root install -d -o edge-fer -g edge-fer -m 0750 /run/edge-fer  # systemd's RuntimeDirectory=
  # As the service user, like systemd would run it.
  in_root setpriv --reuid=edge-fer --regid=edge-fer --init-groups \
    /opt/edge-fer/venv/bin/edge-fer "${DAEMON_ARGS[@]}" --events-jsonl /out/events-arm64.jsonl \
    --report-json /out/report-arm64.json --stats-path /run/edge-fer/stats.json
  python3 - "$OUT/report-arm64.json" "$FRAMES" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
frames, faces = report["frames"], report["face_detections"]
labels = report["label_counts"]
assert frames == int(sys.argv[2]), f"{frames} frames, expected {sys.argv[2]}"
assert faces > 0 and sum(labels.values()) > 0, "no faces or labels came out"
print(f"{frames} frames, {faces} faces, labels {labels}, peak RSS {report['peak_rss_mb']:.0f} MB (under qemu)")
EOF
}

run_monitor() {
  in_root /opt/edge-fer/venv/bin/edge-fer-monitor --seconds 2 --json >"$OUT/monitor.jsonl"
  python3 - "$OUT/monitor.jsonl" <<'EOF'
import json, sys
lines = [line for line in open(sys.argv[1]) if line.strip()]
assert lines, "edge-fer-monitor printed nothing"
summary = json.loads(lines[-1])  # --json: the last line is one JSON object
print(f"{summary['samples']} samples in {summary['seconds']:.1f} s: {', '.join(summary['figures'])[:80]}")
EOF
}

verify_units() {
  local units=(/etc/systemd/system/edge-fer.service /etc/systemd/system/edge-fer@.service
    /etc/systemd/system/edge-fer-monitor.service /etc/systemd/system/edge-fer-monitor-snapshot.service
    /etc/systemd/system/edge-fer-monitor-snapshot.timer)
  in_root systemd-analyze verify "${units[@]}"
  [ "$(in_root systemctl is-enabled edge-fer.service)" = enabled ]
  echo "${#units[@]} units verify (with the per-camera template); edge-fer.service enabled"
}

x86_agreement() {
  [ -x "$HOST_PYTHON" ] || { echo "no host venv at $HOST_PYTHON (set EDGE_FER_HOST_PYTHON)"; return 1; }
  local args=("${DAEMON_ARGS[@]}")
  args[1]="file:$OUT/demo.mkv"
  args[${#args[@]} - 1]="$SRC/deploy/config.example.yaml"
  "$HOST_PYTHON" -m edge_fer.apps.daemon "${args[@]}" --events-jsonl "$OUT/events-x86.jsonl" \
    --report-json "$OUT/report-x86.json" --stats-path "$OUT/stats-x86.json"
  python3 "$SRC/deploy/compare_events.py" "$OUT/events-x86.jsonl" "$OUT/events-arm64.jsonl" \
    --json "$OUT/agreement.json"
}

model_agreement() {
  [ -x "$HOST_PYTHON" ] || { echo "no host venv at $HOST_PYTHON (set EDGE_FER_HOST_PYTHON)"; return 1; }
  in_root /opt/edge-fer/venv/bin/python /opt/edge-fer/deploy/arm64_probe.py probe --data /data/fer2013 \
    --video /out/demo.mkv --out /out/probe-arm64.json
  "$HOST_PYTHON" "$SRC/deploy/arm64_probe.py" probe --data "$DATA" --video "$OUT/demo.mkv" \
    --out "$OUT/probe-x86.json"
  "$HOST_PYTHON" "$SRC/deploy/arm64_probe.py" compare "$OUT/probe-x86.json" "$OUT/probe-arm64.json" \
    --json "$OUT/model-agreement.json"
}

sizes() {
  in_root /opt/edge-fer/venv/bin/python - <<'EOF' | tee /dev/stderr | tail -n 1
import importlib.metadata as md, os, subprocess, sys

def megabytes(path):
    return subprocess.run(["du", "-sm", path], capture_output=True, text=True).stdout.split()[0]

venv = sys.prefix
sizes = {}
for dist in md.distributions(path=[p for p in sys.path if p.startswith(venv)]):
    files = [dist.locate_file(f) for f in dist.files or []]
    sizes[dist.metadata["Name"]] = sum(os.path.getsize(f) for f in files if os.path.isfile(f))
ranked = sorted(sizes.items(), key=lambda kv: -kv[1])
for name, size in ranked[:8]:
    print(f"  {name}: {size / 1e6:.1f} MB")
top = ", ".join(f"{n} {s / 1e6:.0f} MB" for n, s in ranked[:3])
print(f"venv {megabytes(venv)} MB ({top}); /opt/edge-fer total {megabytes('/opt/edge-fer')} MB")
EOF
}

step bootstrap bootstrap
step unpack unpack
step copy-checkout copy_checkout
step install.sh install_edge_fer
step runner-and-imports check_runner
step demo-video demo_video
step daemon-arm64 run_daemon
step monitor run_monitor
step units verify_units
step x86-daemon-agreement x86_agreement
step x86-model-agreement model_agreement
step sizes sizes
table
