#!/usr/bin/env bash
# Set up this checkout on Raspberry Pi OS, Debian or Ubuntu, as a user with sudo or as root:
#
#   scripts/setup.sh daemon   # apt packages, .venv with the runtime (no torch), the native
#                             # runner built, the demo video (when FER2013 is there)
#   scripts/setup.sh test     # apt packages, .venv with the dev extras (torch, pytest, ruff)
#
# Safe to run again. The README's two commands and .ci/run call this script; the apt packages
# are listed here and nowhere else (tests/test_setup_commands.py runs it with apt stubbed).
set -euo pipefail
cd "$(dirname "$0")/.."

# apt packages per mode: python3-venv for the venv, g++ for the native runner;
# for the tests also Xvfb (the window display), systemd + libsystemd-dev + pkg-config +
# python3-dev (systemd-python is built from source), mosquitto (the MQTT tests' broker),
# GStreamer's RTSP server with x264 and python3-gi (tests/test_streams.py's network camera).
APT_DAEMON=(python3-venv g++)
APT_TEST=(python3-venv python3-dev g++ pkg-config libsystemd-dev systemd xvfb mosquitto
    gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly python3-gi)

die() {
    echo "setup.sh: error: $*" >&2
    exit 2
}

mode=${1:-}
case "$mode" in
    daemon) packages=("${APT_DAEMON[@]}") ;;
    test) packages=("${APT_TEST[@]}") ;;
    *) die "give a mode: 'scripts/setup.sh daemon' (run edge-fer) or 'scripts/setup.sh test' (run the tests)" ;;
esac
[ $# -eq 1 ] || die "one mode only, got '$*'; use 'scripts/setup.sh daemon' or 'scripts/setup.sh test'"

if [ "$(id -u)" = 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    die "installing apt packages needs root: run this as root, or install sudo and add yourself to it"
fi
command -v apt-get >/dev/null 2>&1 ||
    die "apt-get not found; this script is for Raspberry Pi OS, Debian or Ubuntu (install ${packages[*]} by hand)"

"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# Raspberry Pi OS: the Camera Module's picamera2 comes from apt, so the daemon's venv sees the
# system's packages, and pip keeps apt's numpy (deploy/constraints-pi.txt says why).
venv_flags=()
pip_flags=()
if [ "$mode" = daemon ] && apt-cache show python3-picamera2 >/dev/null 2>&1; then
    packages+=(python3-picamera2)
    venv_flags=(--system-site-packages)
    pip_flags=(-c deploy/constraints-pi.txt)
fi
# tests/test_web.py's browser: Debian's and Pi OS's Chromium with its driver (selenium, from the
# dev extras, drives it); where apt has no such package (Ubuntu ships a snap) that test is skipped.
if [ "$mode" = test ]; then
    if apt-cache show chromium-driver >/dev/null 2>&1; then
        packages+=(chromium chromium-driver)
    else
        echo "setup.sh: apt has no chromium-driver here; tests/test_web.py's browser test will be skipped"
    fi
fi
echo "setup.sh: apt-get install ${packages[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "$(python3 -V 2>&1) is too old; edge-fer needs Python 3.11+ (Pi OS Bookworm, Debian 12, Ubuntu 24.04)"

echo "setup.sh: .venv"
python3 -m venv "${venv_flags[@]}" .venv
if [ "$mode" = daemon ]; then
    .venv/bin/pip install -q "${pip_flags[@]}" -e '.[display]'
    # The executorch wheel's C++ runtime only: the daemon never imports torch.
    .venv/bin/pip install -q --no-deps -r deploy/requirements-runtime.txt
    .venv/bin/edge-fer-build-runtime
    if [ -f runs/demo/faces_640x480.mp4 ]; then
        echo "setup.sh: demo video runs/demo/faces_640x480.mp4 is there"
    elif ! .venv/bin/python tools/make_demo_video.py; then
        echo "setup.sh: no demo video (see above); edge-fer needs a camera or --source file:PATH" >&2
    fi
    echo "setup.sh: ready; start the daemon with: .venv/bin/edge-fer"
else
    .venv/bin/pip install -q -e '.[dev,systemd]'
    # Home Assistant 2024.3 (the last for Python 3.11) in its own venv, with the dependency
    # pins it ships (package_constraints.txt): tests/test_homeassistant.py checks the MQTT
    # discovery with it.
    echo "setup.sh: .venv-ha (Home Assistant for tests/test_homeassistant.py)"
    python3 -m venv .venv-ha
    .venv-ha/bin/pip install -q --no-deps homeassistant==2024.3.3
    ha_pins=$(.venv-ha/bin/python -c 'import homeassistant, os; print(os.path.join(os.path.dirname(homeassistant.__file__), "package_constraints.txt"))')
    # + what its MQTT integration needs at run time (HA would pip-install them itself):
    # paho-mqtt for mqtt, janus for file_upload, which mqtt depends on.
    .venv-ha/bin/pip install -q -c "$ha_pins" homeassistant==2024.3.3 paho-mqtt janus
    echo "setup.sh: ready; run the tests with: .venv/bin/python -m pytest -q -rs"
fi
