#!/bin/sh
# End-to-end test of `pinsight run` against the kernel's vivid camera (tests/qemu/run-e2e runs it
# in an arm64 guest, in /work, with models/ and the binary as /bin/pinsight):
#  1. capture in three pixel formats: one JSON line a result, with per-stage times, exit 0;
#  2. pinsight capture saves camera frames as photos that classify reads;
#  3. unplug and replug the camera (unbind/bind vivid) during a run: pinsight logs it, keeps
#     running and produces results again once the camera is back.
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
