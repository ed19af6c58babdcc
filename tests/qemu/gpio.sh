#!/bin/sh
# End-to-end test of `pinsight run --mode triggered` on real GPIO lines: the kernel's gpio-sim
# chip and vivid camera in an arm64 guest (tests/qemu/run-e2e --gpio-sim runs it in /work, with
# models/ and the binary as /bin/pinsight).
#  1. the ready line rises once the model is loaded and the camera streams; every output starts
#     at its safe level (the active-low match output rests high);
#  2. a bouncing press (the trigger line pulled up and down several times within the debounce
#     time) gives exactly one burst capture and one result; the class and match outputs show it;
#     trigger-to-output latency is reported (pinsight's own figure, and this script's to 10 ms);
#  3. a clean second press gives a second result;
#  4. SIGTERM: pinsight exits 0 and every output is back at its safe level;
#  5. a user without access to /dev/gpiochip* is told which device and how to fix it.
set -u
export RUST_LOG=info
# The models are in /work/models, not beside the binary as a package installs them.
export PINSIGHT_BACKBONE=/work/models/efficientnet-lite0/backbone-int8.onnx
export PINSIGHT_HEAD=/work/models/imagenet
fail() {
    echo "gpio: FAIL: $*"
    for log in /tmp/gpio.log /tmp/gpio.jsonl; do [ ! -s $log ] || { echo "-- $log"; cat $log; }; done
    exit 1
}
results() { n=$(grep -c '"trigger":' /tmp/gpio.jsonl 2>/dev/null) || true; echo "${n:-0}"; }
# Centiseconds since boot: busybox's date has no sub-second format.
now_cs() { read -r up _ </proc/uptime; echo "${up%.*}${up#*.}"; }

chip=pinsight-e2e
# shellcheck disable=SC2046 # two words
set -- $(gpio-sim-chip "$chip" 12 button ready busy match) \
    || fail "gpio-sim-chip failed"
sim=$2
value() { cat "$sim/sim_gpio$1/value"; }
pull() { echo "pull-$2" >"$sim/sim_gpio$1/pull"; }
expect() { # expect LINE VALUE WHAT
    [ "$(value "$1")" = "$2" ] || fail "$3: line $1 is $(value "$1"), expected $2"
    echo "ok: $3 (line $1 = $2)"
}
wait_value() { # wait_value LINE VALUE SECONDS WHAT
    i=0
    while [ "$(value "$1")" != "$2" ]; do
        [ $i -lt $(($3 * 10)) ] || fail "$4: line $1 still $(value "$1") after $3 s"
        sleep 0.1; i=$((i + 1))
    done
    echo "ok: $4 (line $1 = $2)"
}

# vivid's test pattern carries a clock and a frame counter, so what it is classified as varies
# from frame to frame. The match output lists every class of the head: with --threshold 0 every
# result sets it. The class outputs are wired to what a few frames were classified as, and each
# must show whether the result is its class.
echo "== what vivid's test pattern looks like to the model"
timeout 300 pinsight run --source /dev/video0 --frames 4 --smooth 1 --threshold 0 \
    >/tmp/pattern.jsonl 2>/tmp/pattern.log || { cat /tmp/pattern.log; fail "a continuous run failed"; }
sed -n 's/^{[^{]*"label":"\([^"]*\)".*/\1/p' /tmp/pattern.jsonl | sort -u >/tmp/classes
[ -s /tmp/classes ] || fail "no labels in $(cat /tmp/pattern.jsonl)"
cat /tmp/classes

{
    printf 'board = "generic"\n[gpio]\nchip = "%s"\n' "$chip"
    printf '[trigger]\npin = 0\nedge = "rising"\ndebounce_ms = 100\nburst = 3\ncooldown_ms = 200\n'
    printf '[outputs.ready]\npin = 1\n[outputs.busy]\npin = 2\n'
    printf '[outputs.match]\npin = 3\nactive_low = true\nlabels = [\n'
    sed 's/.*/    "&",/' models/imagenet/labels.txt
    printf ']\n[outputs.classes]\n'
    awk '{ printf "\"%s\" = %d\n", $0, NR + 3 }' /tmp/classes
} >/tmp/gpio.toml
pinsight config /tmp/gpio.toml >/dev/null || fail "pinsight config refused /tmp/gpio.toml"
# Each class output is right for a result labelled $1: high for its class, low for the others.
check_classes() {
    line=4
    while read -r class; do
        if [ "$class" = "$1" ]; then expect $line 1 "the output for \"$class\" is up"
        else expect $line 0 "the output for \"$class\" is down"; fi
        line=$((line + 1))
    done </tmp/classes
}

echo "== start in triggered mode"
# The output lines are pulled to the opposite of their safe levels while nobody drives them
# (gpio-sim returns a released line to its pull), so that reading a safe level shows pinsight
# driving it. Except ready: pulled down, so that its rise shows pinsight is up.
pull 0 down
pull 1 down
for line in 2 4 5 6 7 8 9 10 11; do pull $line up; done
pull 3 down
RUST_LOG=info,pinsight::gpio=debug pinsight run --config /tmp/gpio.toml --mode triggered \
    --source /dev/video0 --threshold 0 --hold-safe-ms 5000 \
    >/tmp/gpio.jsonl 2>/tmp/gpio.log &
pid=$!
wait_value 1 1 300 "ready rises after start-up"
kill -0 $pid 2>/dev/null || { cat /tmp/gpio.log; fail "pinsight exited"; }
expect 2 0 "busy rests low"
expect 3 1 "the active-low match output rests high"
check_classes ""
[ "$(results)" -eq 0 ] || fail "a result before any press"

echo "== a bouncing press: five pulls within the 100 ms debounce time, then held"
started=$(now_cs)
pull 0 up; pull 0 down; pull 0 up; pull 0 down; pull 0 up
wait_value 3 0 120 "the active-low match output shows the result"
shown=$(now_cs)
i=0
while [ "$(results)" -lt 1 ]; do
    [ $i -lt 100 ] || fail "no result line"
    sleep 0.1; i=$((i + 1))
done
label=$(sed -n 's/^{[^{]*"label":"\([^"]*\)".*/\1/p' /tmp/gpio.jsonl)
echo "result: \"$label\""
check_classes "$label"
echo "script's trigger-to-output latency: $(( (shown - started) * 10 )) ms (10 ms steps)"
# Long enough for a second capture, were the bounce counted twice.
sleep 5
pull 0 down
sleep 1
[ "$(results)" -eq 1 ] || { cat /tmp/gpio.jsonl; fail "$(results) results for one bouncing press"; }
expect 2 0 "busy is low again"
cat /tmp/gpio.jsonl

echo "== a clean second press"
pull 0 up
i=0
while [ "$(results)" -lt 2 ]; do
    [ $i -lt 1200 ] || fail "no second result"
    sleep 0.1; i=$((i + 1))
done
pull 0 down
tail -n 1 /tmp/gpio.jsonl
grep -q '"burst":3' /tmp/gpio.jsonl || fail "no result says burst 3"
grep -q '"latency_ms":' /tmp/gpio.jsonl || fail "no latency in the results"
sed -n 's/.*"trigger":\({[^}]*}\).*/pinsight: \1/p' /tmp/gpio.jsonl

echo "== SIGTERM: every output back to its safe level"
kill -TERM $pid
# pinsight keeps the lines at their safe levels for 5 s (--hold-safe-ms) after it
# has set them, then exits and releases them.
i=0
until grep -q "outputs at their safe levels" /tmp/gpio.log; do
    [ $i -lt 300 ] || fail "no 'outputs at their safe levels' 30 s after SIGTERM"
    sleep 0.1; i=$((i + 1))
done
expect 1 0 "ready is low"
expect 2 0 "busy is low"
expect 3 1 "the active-low match output is high (inactive)"
check_classes ""
i=0
while kill -0 $pid 2>/dev/null; do
    [ $i -lt 300 ] || fail "pinsight still running 30 s after SIGTERM"
    sleep 0.1; i=$((i + 1))
done
wait $pid
rc=$?
[ $rc -eq 0 ] || fail "pinsight exited $rc after SIGTERM"
expect 2 1 "released, the busy line is back at its pull"
expect 3 0 "released, the match line is back at its pull"
grep -v DEBUG /tmp/gpio.log

echo "== a user without access to the gpiochips"
echo "pinsight:x:1000:1000::/tmp:/bin/sh" >>/etc/passwd
echo "pinsight:x:1000:" >>/etc/group
chmod 0600 /dev/gpiochip*
chmod 0644 /tmp/gpio.toml
su pinsight -c "pinsight run --config /tmp/gpio.toml --source /dev/video0 --frames 1" \
    >/dev/null 2>/tmp/denied.log
rc=$?
cat /tmp/denied.log
[ $rc -eq 4 ] || fail "exit $rc without access to the gpiochips, expected 4 (permission)"
grep -q "permission denied opening /dev/gpiochip" /tmp/denied.log || fail "no device in the message"
grep -q "gpio\` group" /tmp/denied.log || fail "no fix in the message"
chmod 0600 /dev/gpiochip*

echo "gpio: all checks passed"
