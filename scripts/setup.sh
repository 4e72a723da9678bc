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

# Each step prints what it does and how long it took, on one line, with a dot every 15 s
# while it runs:
#   setup.sh: [4/8] pip install the runtime ..... 42 s
# Its own output goes to a log that is shown only when it fails, then one line with the fix.
log=$(mktemp "${TMPDIR:-/tmp}/edge-fer-setup.XXXXXX")
trap 'rm -f "$log"' EXIT
step_no=0
steps_total=0
step() {
    run_step "$@" || exit 1
}
# optional_step WHAT CONSEQUENCE COMMAND...: a step whose failure is one warning saying what
# will not work, and set-up goes on.
optional_step() {
    on_failure=warn run_step "$@"
}
run_step() {
    local what=$1 fix=$2 started=$SECONDS rc=0
    shift 2
    step_no=$((step_no + 1))
    printf 'setup.sh: [%d/%d] %s ...' "$step_no" "$steps_total" "$what"
    "$@" >"$log" 2>&1 </dev/null &
    local pid=$! naps=0 dotted=$SECONDS
    while kill -0 "$pid" 2>/dev/null; do
        # short naps first: most steps take well under a second when there is nothing to do
        if [ "$naps" -lt 20 ]; then sleep 0.05; else sleep 0.5; fi
        naps=$((naps + 1))
        if [ $((SECONDS - dotted)) -ge 15 ]; then
            printf '.'
            dotted=$SECONDS
        fi
    done
    wait "$pid" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo " failed after $((SECONDS - started)) s"
        tail -n 25 "$log" >&2
        if [ "${on_failure:-}" = warn ]; then
            echo "setup.sh: warning: $what failed (exit $rc): $fix" >&2
        else
            echo "setup.sh: error: $what failed (exit $rc): $fix" >&2
        fi
        return 1
    fi
    echo " $((SECONDS - started)) s"
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

# Raspberry Pi OS: the Camera Module's picamera2 comes from apt, so the daemon's venv sees the
# system's packages, and pip keeps apt's numpy (deploy/constraints-pi.txt says why).
venv_flags=()
pip_flags=()
apt_fix="check the network and apt's sources (apt-get update as root shows the problem), then run this again"
pip_fix="check that pip reaches PyPI (proxy settings: pip config list), then run this again"
if [ "$mode" = daemon ]; then
    # FER2013 where the tools look for it (EDGE_FER_DATA moves it); without it the daemon
    # plays the demo that ships in the package (edge_fer/samples/).
    data=${EDGE_FER_DATA:-$(cd .. && pwd)/shared/datasets/fer2013}
    steps_total=$((7 + $([ -d "$data" ] && echo 1 || echo 0)))
else
    steps_total=9
fi
step "apt-get update" "$apt_fix" "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
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
step "apt-get install ${packages[*]}" "$apt_fix" \
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"
command -v python3 >/dev/null 2>&1 ||
    die "python3 not found after installing ${packages[*]}; install Python 3.11+ (apt-get install python3)"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
    die "$(python3 -V 2>&1) is too old or missing; edge-fer needs Python 3.11+ (Pi OS Bookworm, Debian 12, Ubuntu 24.04)"

step "python3 -m venv .venv" "install python3-venv (apt-get install python3-venv), then run this again" \
    python3 -m venv "${venv_flags[@]}" .venv
if [ "$mode" = daemon ]; then
    step "pip install the runtime (.[display]: OpenCV, numpy, MQTT, Prometheus, pygame)" "$pip_fix" \
        .venv/bin/pip install -q "${pip_flags[@]}" -e '.[display]'
    # The executorch wheel's C++ runtime only: the daemon never imports torch.
    step "pip install the ExecuTorch C++ runtime (deploy/requirements-runtime.txt, no torch)" "$pip_fix" \
        .venv/bin/pip install -q --no-deps -r deploy/requirements-runtime.txt
    step "build the native runner (edge-fer-build-runtime)" \
        "install g++ (apt-get install g++), then run this again" .venv/bin/edge-fer-build-runtime
    if [ -d "$data" ]; then
        if [ -f runs/demo/faces_640x480.mp4 ]; then
            step "FER2013 demo video runs/demo/faces_640x480.mp4 (there already)" "" true
        else
            optional_step "FER2013 demo video from $data (tools/make_demo_video.py)" \
                "edge-fer plays the shipped demo instead; check the dataset at $data (or EDGE_FER_DATA) and run this again for the FER2013 one" \
                .venv/bin/python tools/make_demo_video.py --data "$data" || true
        fi
    fi
    # The check: the command named below, on the video it will play when there is no camera.
    check_dir=$(mktemp -d "${TMPDIR:-/tmp}/edge-fer-check.XXXXXX")
    trap 'rm -f "$log"; rm -rf "$check_dir"' EXIT
    step "check: edge-fer classifies 30 frames from its default source (a camera, else a demo video)" \
        "the daemon does not start (its error is above); fix that, then run this again" \
        timeout 120 .venv/bin/edge-fer --display none --max-frames 30 --pace fast --console off \
        --stats-path "$check_dir/stats.json"
    if [ -f runs/demo/faces_640x480.mp4 ]; then
        echo "setup.sh: with no camera, edge-fer plays the FER2013 demo video (runs/demo/faces_640x480.mp4)"
    elif [ -d "$data" ]; then
        echo "setup.sh: with no camera, edge-fer plays the demo that ships with it (edge_fer/samples/)"
    else
        echo "setup.sh: no FER2013 at $data (not needed): with no camera, edge-fer plays the demo" \
            "that ships with it (edge_fer/samples/: Face Research Lab London Set, CC BY 4.0; SFHQ-T2I, MIT)"
    fi
    echo "setup.sh: ready; start the daemon with: .venv/bin/edge-fer"
else
    step "pip install the dev extras (.[dev,systemd]: torch, executorch, pytest, ruff; the longest step)" \
        "$pip_fix" .venv/bin/pip install -q -e '.[dev,systemd]'
    # testkit/: the helpers the tests and benchmarks share, a package of its own (never on a Pi)
    step "pip install the test kit (testkit/: stream servers, fakes, bad models)" "$pip_fix" \
        .venv/bin/pip install -q -e ./testkit
    # Home Assistant 2024.3 (the last for Python 3.11) in its own venv, with the dependency
    # pins it ships (package_constraints.txt): tests/test_homeassistant.py checks the MQTT
    # discovery with it.
    step "python3 -m venv .venv-ha (Home Assistant for tests/test_homeassistant.py)" \
        "install python3-venv (apt-get install python3-venv), then run this again" python3 -m venv .venv-ha
    step "pip install homeassistant==2024.3.3 into .venv-ha" "$pip_fix" \
        .venv-ha/bin/pip install -q --no-deps homeassistant==2024.3.3
    # + what its MQTT integration needs at run time (HA would pip-install them itself):
    # paho-mqtt for mqtt, janus for file_upload, which mqtt depends on.
    ha_pins=$(.venv-ha/bin/python -c 'import homeassistant, os; print(os.path.join(os.path.dirname(homeassistant.__file__), "package_constraints.txt"))') ||
        die "the Home Assistant just installed in .venv-ha does not import; remove .venv-ha and run this again"
    step "pip install Home Assistant's dependencies (its package_constraints.txt)" "$pip_fix" \
        .venv-ha/bin/pip install -q -c "$ha_pins" homeassistant==2024.3.3 paho-mqtt janus
    step "check: pytest and ruff run" "the test tools did not install (above); run this again" \
        bash -c '.venv/bin/python -m pytest --version && .venv/bin/ruff --version'
    echo "setup.sh: ready; run the tests with: .venv/bin/python -m pytest -q -rs"
fi
