#!/bin/sh
# Example guest script for tests/qemu/run-e2e: checks the virtual camera, runs pinsight on a photo
# and simulates unplugging and replugging the camera. Runs in the guest under busybox sh, in /work.
#
#   tests/qemu/run-e2e --binary target/aarch64-unknown-linux-gnu/release/pinsight \
#       --guest-script tests/qemu/smoke.sh --files models --files samples
set -u

fail() { echo "smoke: FAIL: $*"; exit 1; }
step() { echo; echo "== $*"; }

step "video devices"
ls -l /dev/video* || fail "no /dev/video* node"
[ -c /dev/video0 ] || fail "/dev/video0 is not a character device"
name=$(cat /sys/class/video4linux/video0/name) || fail "cannot read /sys/class/video4linux/video0/name"
echo "video0 name: $name"
echo "video0 device: $(readlink -f /sys/class/video4linux/video0/device)"
echo "vivid driver: $(echo /sys/bus/platform/drivers/vivid/*)"

step "pinsight --version"
/bin/pinsight --version || fail "pinsight --version exited $?"

step "pinsight classify samples/coffee.png"
out=$(/bin/pinsight classify --backbone models/efficientnet-lite0/backbone-int8.onnx \
    --head models/imagenet samples/coffee.png 2>&1)
rc=$?
echo "$out"
[ $rc -eq 0 ] || fail "pinsight classify exited $rc"
echo "$out" | grep -q espresso || fail "'espresso' is not in the classify output"

step "unplug and replug the camera (unbind/bind vivid.0)"
vivid-unplug || fail "vivid-unplug failed"
ls /dev/video* 2>/dev/null
[ ! -e /dev/video0 ] || fail "/dev/video0 is still there after unbinding vivid.0"
echo "unbound: /dev/video0 is gone"
vivid-plug || fail "vivid-plug failed"
[ -c /dev/video0 ] || fail "/dev/video0 did not come back after binding vivid.0"
echo "rebound: $(ls /dev/video*), name: $(cat /sys/class/video4linux/video0/name)"

step "smoke: all checks passed"
