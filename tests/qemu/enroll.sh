#!/bin/sh
# End-to-end test of teaching on the device ([enroll]) on real GPIO lines and a real camera: the
# kernel's gpio-sim chip gives two buttons and the outputs, vivid's "Test Pattern" control gives
# three things to look at (tests/qemu/run-e2e --gpio-sim runs it in /work, with models/, the
# v4l2_control example and the binary as /bin/pinsight).
#  1. with nothing taught, pinsight runs the ImageNet head;
#  2. the "red" button pressed on vivid's red pattern: its photos are saved, busy rises, and the
#     round ends "too_few" (no blue photos yet);
#  3. the "blue" button pressed on the blue pattern: a head is learnt and taken in ("swapped"),
#     taught pulses; the press-to-swap latency in the guest is reported;
#  4. the red and the blue pattern each raise their class's output line, and a third pattern
#     raises the unknown line;
#  5. SIGTERM: pinsight exits 0.
set -u
export RUST_LOG=info
# The models are in /work/models, not beside the binary as a package installs them.
export PINSIGHT_BACKBONE=/work/models/efficientnet-lite0/backbone-int8.onnx
export PINSIGHT_HEAD=/work/models/imagenet
# The feature cache of the learner, in the guest's memory.
export XDG_CACHE_HOME=/tmp/cache
fail() {
    echo "enroll: FAIL: $*"
    for log in /tmp/enroll.log /tmp/enroll.jsonl; do [ ! -s $log ] || { echo "-- $log"; cat $log; }; done
    exit 1
}
pattern() {
    /work/v4l2_control /dev/video0 "Test Pattern" "$1" || fail "cannot show the pattern $1"
}
events() { n=$(grep -c '"event":"enrolled"' /tmp/enroll.jsonl 2>/dev/null) || true; echo "${n:-0}"; }
results() { n=$(grep -c '"frame":' /tmp/enroll.jsonl 2>/dev/null) || true; echo "${n:-0}"; }

chip=pinsight-enroll
# shellcheck disable=SC2046 # two words
set -- $(gpio-sim-chip "$chip" 8 red blue busy taught out-red out-blue unknown spare) \
    || fail "gpio-sim-chip failed"
sim=$2
value() { cat "$sim/sim_gpio$1/value"; }
pull() { echo "pull-$2" >"$sim/sim_gpio$1/pull"; }
wait_value() { # wait_value LINE VALUE SECONDS WHAT
    i=0
    while [ "$(value "$1")" != "$2" ]; do
        [ $i -lt $(($3 * 10)) ] || fail "$4: line $1 still $(value "$1") after $3 s"
        sleep 0.1; i=$((i + 1))
    done
    echo "ok: $4 (line $1 = $2)"
}
wait_events() { # wait_events COUNT SECONDS
    i=0
    while [ "$(events)" -lt "$1" ]; do
        [ $i -lt $(($2 * 10)) ] || fail "no enrollment event $1 after $2 s"
        kill -0 $pid 2>/dev/null || fail "pinsight exited"
        sleep 0.1; i=$((i + 1))
    done
    grep '"event":"enrolled"' /tmp/enroll.jsonl | sed -n "${1}p"
}
press() { # press LINE: a clean press, held for half a second
    pull "$1" up; sleep 0.5; pull "$1" down
}

/work/v4l2_control /dev/video0 | sed -n '/^Test Pattern/,/^[^ ]/p'

{
    printf 'board = "generic"\n[gpio]\nchip = "%s"\n' "$chip"
    printf '[enroll]\nphotos = "/tmp/photos"\nhead = "/tmp/taught"\nburst = 5\nevery_ms = 200\n'
    printf 'min_photos = 4\nedge = "rising"\ndebounce_ms = 50\n'
    printf '[enroll.classes]\nred = 0\nblue = 1\n'
    printf '[outputs.busy]\npin = 2\n[outputs.taught]\npin = 3\npulse_ms = 2000\n'
    printf '[outputs.classes]\nred = 4\nblue = 5\n[outputs.unknown]\npin = 6\n'
} >/tmp/enroll.toml
pinsight config /tmp/enroll.toml >/dev/null || fail "pinsight config refused /tmp/enroll.toml"

echo "== start with nothing taught"
pull 0 down
pull 1 down
pattern "100% Red"
pinsight run --config /tmp/enroll.toml --source /dev/video0 --smooth 1 --threshold 0 \
    >/tmp/enroll.jsonl 2>/tmp/enroll.log &
pid=$!
i=0
while [ "$(results)" -lt 1 ]; do
    [ $i -lt 3000 ] || fail "no result in 300 s"
    kill -0 $pid 2>/dev/null || fail "pinsight exited"
    sleep 0.1; i=$((i + 1))
done
grep -q "no taught head in /tmp/taught yet" /tmp/enroll.log || fail "the log does not say no head is taught"
head -n 1 /tmp/enroll.jsonl

echo "== the red button on the red pattern"
press 0
wait_value 2 1 60 "busy rises with the press"
wait_events 1 600
grep '"event"' /tmp/enroll.jsonl | sed -n 1p | grep -q '"outcome":"too_few"' \
    || fail "the first round is not too_few"
wait_value 2 0 60 "busy falls when the round ends"

echo "== the blue button on the blue pattern"
pattern "100% Blue"
sleep 5
press 1
wait_events 2 900
event=$(grep '"event":"enrolled"' /tmp/enroll.jsonl | sed -n 2p)
echo "$event" | grep -q '"outcome":"swapped"' || fail "the second round did not swap: $event"
echo "$event" | grep -q '"photos":{"blue":5,"red":5}' || fail "not 5 photos a class: $event"
wait_value 2 0 60 "busy falls once the head is in use"
echo "press to swap in the guest: $(echo "$event" | sed -n 's/.*"press_to_swap_ms":\([0-9.]*\).*/\1/p') ms; learning $(echo "$event" | sed -n 's/.*"train_ms":\([0-9.]*\).*/\1/p') ms"
grep -q "new head from /tmp/taught" /tmp/enroll.log || fail "the log does not say the head was taken"
ls /tmp/photos/red /tmp/photos/blue

echo "== the patterns on the class and unknown outputs"
wait_value 5 1 120 "the blue pattern raises the blue output"
wait_value 6 0 5 "the blue pattern is known"
pattern "100% Red"
wait_value 4 1 120 "the red pattern raises the red output"
wait_value 5 0 5 "the blue output is down"
wait_value 6 0 5 "the red pattern is known"
pattern "16x16 Checkers"
wait_value 6 1 120 "a pattern the head was not taught raises the unknown output"
wait_value 4 0 5 "the red output is down"
tail -n 2 /tmp/enroll.jsonl

echo "== SIGTERM"
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 0 ] || fail "pinsight exited $rc after SIGTERM"
grep -v DEBUG /tmp/enroll.log | tail -n 20
echo "enroll: all checks passed"
