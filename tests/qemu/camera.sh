#!/bin/sh
# End-to-end test of `pinsight run` against the kernel's vivid camera (tests/qemu/run-e2e runs it
# in an arm64 guest, in /work, with models/ and the binary as /bin/pinsight):
#  1. capture in three pixel formats: one JSON line a result, with per-stage times, exit 0;
#  2. pinsight capture saves camera frames as photos that classify reads;
#  3. unplug and replug the camera (unbind/bind vivid) during a run: pinsight logs it, keeps
#     running and produces results again once the camera is back;
#  4. as a systemd service with a watchdog (NOTIFY_SOCKET, WATCHDOG_USEC; the notify_listen
#     example in /work listening as systemd would): READY=1, then WATCHDOG=1 while frames come;
#     once the camera is gone the pings stop although the process runs on, and the listener
#     says so, as systemd would before restarting it; they come again once it is back.
set -u
export RUST_LOG=info
# The models are in /work/models, not beside the binary as a package installs them.
export PINSIGHT_BACKBONE=/work/models/efficientnet-lite0/backbone-int8.onnx
export PINSIGHT_HEAD=/work/models/imagenet
fail() { echo "camera: FAIL: $*"; exit 1; }
lines() { n=$(grep -c '"frame":' "$1" 2>/dev/null) || true; echo "${n:-0}"; }

# Every result line must carry the four stage times and a label list.
check_results() {
    file=$1 expected=$2
    count=$(lines "$file")
    [ "$count" -eq "$expected" ] || fail "$file: $count result lines, expected $expected"
    for field in '"capture":' '"convert":' '"inference":' '"decide":' '"top":\[{"label":' '"time":"'; do
        with=$(grep -c "$field" "$file")
        [ "$with" -eq "$expected" ] || fail "$file: $with of $expected lines have $field"
    done
}

for format in YUYV NV12 RGB3; do
    echo "== capture $format"
    timeout 300 pinsight run --source /dev/video0 --format "$format" --frames 3 \
        >"/tmp/$format.jsonl" 2>"/tmp/$format.log"
    rc=$?
    cat "/tmp/$format.log"
    head -n 1 "/tmp/$format.jsonl"
    [ $rc -eq 0 ] || fail "pinsight run --format $format exited $rc"
    grep -q "streaming $format 640x480" "/tmp/$format.log" || fail "no 'streaming $format 640x480' in the log"
    check_results "/tmp/$format.jsonl" 3
    echo "camera: $format ok"
done

echo "== capture photos of a class from the camera, then classify them"
timeout 300 pinsight capture /tmp/photos --class vivid --count 3 --every 0.5 \
    --source /dev/video0 --format YUYV >/tmp/capture.txt 2>/tmp/capture.log
rc=$?
cat /tmp/capture.log /tmp/capture.txt
[ $rc -eq 0 ] || fail "pinsight capture exited $rc"
[ "$(wc -l </tmp/capture.txt)" -eq 3 ] || fail "pinsight capture printed $(wc -l </tmp/capture.txt) paths, expected 3"
saved=$(find /tmp/photos/vivid -name '*.jpg' | wc -l)
[ "$saved" -eq 3 ] || fail "$saved photos in /tmp/photos/vivid, expected 3"
# shellcheck disable=SC2046 # one argument a path; the paths have no spaces
timeout 300 pinsight classify --json $(cat /tmp/capture.txt) >/tmp/classified.jsonl 2>/tmp/classify.log \
    || { cat /tmp/classify.log; fail "the captured photos do not classify"; }
[ "$(grep -c '"path":' /tmp/classified.jsonl)" -eq 3 ] || fail "classify did not read the 3 photos"
echo "camera: capture ok"

echo "== unplug and replug during a run"
pinsight run --source /dev/video0 --frames 8 --fps 2 >/tmp/replug.jsonl 2>/tmp/replug.log &
pid=$!
waited=0
while [ "$(lines /tmp/replug.jsonl)" -lt 2 ]; do
    kill -0 $pid 2>/dev/null || { cat /tmp/replug.log; fail "pinsight ended before its second result"; }
    [ $waited -lt 240 ] || fail "no second result within 240 s"
    sleep 1; waited=$((waited + 1))
done
echo "== a second pinsight on the same camera is told it is busy"
timeout 120 pinsight run --source /dev/video0 --frames 1 >/dev/null 2>/tmp/busy.log
rc=$?
cat /tmp/busy.log
[ $rc -eq 4 ] || fail "a second pinsight on a busy camera exited $rc, expected 4 (device)"
grep -q "/dev/video0 is busy" /tmp/busy.log || fail "no 'is busy' message"
vivid-unplug || fail "vivid-unplug failed"
sleep 3
during=$(lines /tmp/replug.jsonl)
kill -0 $pid 2>/dev/null || { cat /tmp/replug.log; fail "pinsight exited while the camera was unplugged"; }
vivid-plug || fail "vivid-plug failed"
waited=0
while kill -0 $pid 2>/dev/null; do
    [ $waited -lt 300 ] || { kill $pid; fail "pinsight did not finish within 300 s of the replug"; }
    sleep 1; waited=$((waited + 1))
done
wait $pid
rc=$?
cat /tmp/replug.log
[ $rc -eq 0 ] || fail "pinsight run exited $rc across the replug"
check_results /tmp/replug.jsonl 8
grep -q "camera stopped streaming" /tmp/replug.log || fail "the unplug was not logged"
grep -q "camera is back" /tmp/replug.log || fail "the replug was not logged"
after=$((8 - during))
[ $after -gt 0 ] || fail "no result after the replug"
echo "camera: replug ok ($during results before and while unplugged, $after after the replug)"

echo "== the systemd watchdog: fed while frames come, starved while the camera is gone"
# 20 s: an inference under TCG takes a few seconds; the unit's WatchdogSec is 30 s.
count() { n=$(grep -c "$1" /tmp/notify.log 2>/dev/null) || true; echo "${n:-0}"; }
/work/notify_listen /tmp/notify 20000 >/tmp/notify.log 2>&1 &
listener=$!
sleep 1
NOTIFY_SOCKET=/tmp/notify WATCHDOG_USEC=20000000 pinsight run --source /dev/video0 --fps 2 \
    >/tmp/watchdog.jsonl 2>/tmp/watchdog.log &
pid=$!
waited=0
while [ "$(count ' WATCHDOG=1$')" -lt 3 ]; do
    kill -0 $pid 2>/dev/null || { cat /tmp/watchdog.log /tmp/notify.log; fail "pinsight ended before its third ping"; }
    [ $waited -lt 240 ] || { cat /tmp/notify.log; fail "no third WATCHDOG=1 within 240 s"; }
    sleep 1; waited=$((waited + 1))
done
first=$(sed -n '1s/^[0-9]* //p' /tmp/notify.log)
[ "$first" = READY=1 ] || { cat /tmp/notify.log; fail "the first message was '$first', not READY=1"; }
[ "$(count 'watchdog timeout')" -eq 0 ] || { cat /tmp/notify.log; fail "a watchdog timeout while frames came"; }
vivid-unplug || fail "vivid-unplug failed"
waited=0
while [ "$(count 'watchdog timeout')" -lt 1 ]; do
    kill -0 $pid 2>/dev/null || { cat /tmp/watchdog.log; fail "pinsight exited while the camera was gone"; }
    [ $waited -lt 120 ] || { cat /tmp/notify.log; kill $pid; fail "pings went on for 120 s without a camera"; }
    sleep 1; waited=$((waited + 1))
done
kill -0 $pid 2>/dev/null || fail "pinsight exited while the camera was gone"
starved=$(count ' WATCHDOG=1$')
vivid-plug || fail "vivid-plug failed"
waited=0
while [ "$(count ' WATCHDOG=1$')" -le "$starved" ]; do
    [ $waited -lt 240 ] || { cat /tmp/notify.log; kill $pid; fail "no WATCHDOG=1 within 240 s of the replug"; }
    sleep 1; waited=$((waited + 1))
done
kill -TERM $pid
wait $pid
rc=$?
wait $listener
cat /tmp/notify.log
[ $rc -eq 0 ] || { cat /tmp/watchdog.log; fail "pinsight run exited $rc on SIGTERM"; }
[ "$(sed -n '$s/^[0-9]* //p' /tmp/notify.log)" = STOPPING=1 ] || fail "the last message was not STOPPING=1"
grep 'watchdog timeout' /tmp/notify.log
echo "camera: watchdog ok ($starved pings before the unplug, none for 20 s without a camera, again after the replug)"
