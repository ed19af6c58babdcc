#!/bin/sh
# Soak test of `pinsight run` on the kernel's vivid camera, across many unplug/replug cycles
# (scripts/soak --camera runs it through tests/qemu/run-e2e, in /work with models/ and the binary
# as /bin/pinsight). One run of pinsight; for each cycle vivid is unbound (the camera vanishes),
# left away SOAK_UNPLUGGED_S seconds and bound again: pinsight must log the loss and the return,
# keep running, and produce two results after each return (the first may be a frame taken before
# the unplug). Its VmRSS, VmHWM, open file descriptors and mappings of the video device (the
# capture buffers, which a stream not torn down would leave behind without a descriptor) are
# sampled after its first results, after each cycle and after the last one; then SIGTERM, and it
# must exit 0. Every frame the camera delivered must be accounted for: on each result line, the
# lines so far + skipped + dropped = frame + 1 (frames count from 0).
#
# Settings, from /work/soak.conf when present (scripts/soak writes it):
#   SOAK_CYCLES (default 20), SOAK_UNPLUGGED_S (default 2), SOAK_RSS_TOLERANCE_MIB (default 8:
#   how much VmRSS may grow between the first and the last sample).
# The figures are printed as a table and as "SOAK-FIGURE NAME VALUE" lines for scripts/soak.
set -u
# The models are in /work/models, not beside the binary as a package installs them.
export PINSIGHT_BACKBONE=/work/models/efficientnet-lite0/backbone-int8.onnx
export PINSIGHT_HEAD=/work/models/imagenet
export RUST_LOG=info
SOAK_CYCLES=20 SOAK_UNPLUGGED_S=2 SOAK_RSS_TOLERANCE_MIB=8
# shellcheck source=/dev/null
[ ! -f /work/soak.conf ] || . /work/soak.conf
cycles=$SOAK_CYCLES unplugged=$SOAK_UNPLUGGED_S tolerance_kib=$((SOAK_RSS_TOLERANCE_MIB * 1024))

out=/tmp/soak.jsonl log=/tmp/soak.log
pid=
fail() {
    echo "soak: FAIL: $*"
    if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null; echo "== pinsight's log"; cat "$log"; fi
    exit 1
}
lines() { n=$(grep -c '"frame":' "$out" 2>/dev/null) || true; echo "${n:-0}"; }
logged() { n=$(grep -c "$1" "$log" 2>/dev/null) || true; echo "${n:-0}"; }
alive() { kill -0 "$pid" 2>/dev/null || fail "pinsight exited ($1)"; }

# sample: sets rss, hwm (KiB), fds and maps (mappings of a video device: the capture buffers,
# which a stream that was not torn down would leave behind without an open descriptor) of
# pinsight.
sample() {
    rss=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status")
    hwm=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status")
    set -- "/proc/$pid/fd"/*
    fds=$#
    maps=$(grep -c ' /dev/video' "/proc/$pid/maps") || true
    if [ -z "$rss" ] || [ -z "$hwm" ]; then fail "cannot read /proc/$pid/status"; fi
}

# wait_for WHAT SECONDS COMMAND...: until COMMAND succeeds, pinsight still running.
wait_for() {
    what=$1 limit=$2 waited=0
    shift 2
    until "$@"; do
        alive "while waiting for $what"
        [ $waited -lt "$limit" ] || fail "no $what within $limit s"
        sleep 1; waited=$((waited + 1))
    done
}
results_at_least() { [ "$(lines)" -ge "$1" ]; }
logged_at_least() { [ "$(logged "$1")" -ge "$2" ]; }

echo "== soak: pinsight run --source /dev/video0, $cycles unplug/replug cycles"
started=$(date +%s)
pinsight run --source /dev/video0 >"$out" 2>"$log" &
pid=$!
wait_for "first 3 results" 600 results_at_least 3
sample
rss0=$rss hwm0=$hwm fds0=$fds maps0=$maps at0=$(lines)
echo "soak: first sample after $at0 results: VmRSS $rss0 KiB, VmHWM $hwm0 KiB, $fds0 fds, $maps0 buffer mappings"
ls -l "/proc/$pid/fd"

stop_msg="camera stopped streaming" back_msg="camera is back"
c=1
while [ $c -le "$cycles" ]; do
    vivid-unplug || fail "cycle $c: vivid-unplug failed"
    [ ! -e /dev/video0 ] || fail "cycle $c: /dev/video0 still there after vivid-unplug"
    wait_for "log of the unplug in cycle $c" 60 logged_at_least "$stop_msg" $c
    sleep "$unplugged"
    alive "while the camera was unplugged in cycle $c"
    vivid-plug || fail "cycle $c: vivid-plug failed"
    wait_for "log of the camera's return in cycle $c" 60 logged_at_least "$back_msg" $c
    back_at=$(lines)
    wait_for "2 results after the return in cycle $c" 300 results_at_least $((back_at + 2))
    sample
    echo "soak: cycle $c: $(lines) results, VmRSS $rss KiB, VmHWM $hwm KiB, $fds fds, $maps buffer mappings"
    c=$((c + 1))
done
sample
rss1=$rss hwm1=$hwm fds1=$fds maps1=$maps at1=$(lines)
echo "soak: last sample after $at1 results: VmRSS $rss1 KiB, VmHWM $hwm1 KiB, $fds1 fds, $maps1 buffer mappings"
ls -l "/proc/$pid/fd"

kill -TERM "$pid"
waited=0
while kill -0 "$pid" 2>/dev/null; do
    # A zombie until waited for: its status has no memory lines.
    grep -q '^VmRSS' "/proc/$pid/status" 2>/dev/null || break
    [ $waited -lt 120 ] || fail "pinsight did not exit within 120 s of SIGTERM"
    sleep 1; waited=$((waited + 1))
done
wait "$pid"
rc=$?
ended=$(date +%s)
pid_done=$pid pid=
echo "== pinsight's log"
cat "$log"

results=$(lines)
last=$(tail -n 1 "$out")
field() { echo "$last" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }
frame=$(field frame) skipped=$(field skipped) dropped=$(field dropped)
accounted=$((results + ${skipped:-0} + ${dropped:-0}))
captured=$((${frame:--1} + 1))
# The line numbers, frames and counts of the lines that do not add up (the first 5), then their
# number.
line_check=$(awk '{
        n++
        match($0, /"frame":[0-9]+/); f = substr($0, RSTART + 8, RLENGTH - 8)
        match($0, /"skipped":[0-9]+/); s = substr($0, RSTART + 10, RLENGTH - 10)
        match($0, /"dropped":[0-9]+/); d = substr($0, RSTART + 10, RLENGTH - 10)
        if (n + s + d != f + 1 && bad++ < 5)
            printf "  line %d: frame %d, skipped %d, dropped %d\n", n, f, s, d
    } END { print bad + 0 }' "$out")
broken=$(echo "$line_check" | tail -n 1)
summary=$(sed -n 's/.* \([0-9]*\) results, \([0-9]*\) frames skipped as corrupt, \([0-9]*\) dropped.*/\1 \2 \3/p' "$log" | tail -n 1)
stops=$(logged "$stop_msg") backs=$(logged "$back_msg")
cpu=$(sed -n 's/^CPU part[[:space:]]*: //p' /proc/cpuinfo | head -n 1)

figures="cycles=$cycles
unplugs_logged=$stops
returns_logged=$backs
results=$results
skipped=${skipped:-0}
dropped=${dropped:-0}
accounted=$accounted
frames=$captured
lines_not_adding_up=$broken
rss_start_kib=$rss0
rss_end_kib=$rss1
rss_peak_kib=$hwm1
rss_tolerance_kib=$tolerance_kib
fds_start=$fds0
fds_end=$fds1
buffer_mappings_start=$maps0
buffer_mappings_end=$maps1
start_sample_at_result=$at0
end_sample_at_result=$at1
wall_s=$((ended - started))
exit_status=$rc
guest_cpu_part=${cpu:-unknown}"
echo
echo "camera soak (pid $pid_done; log summary: ${summary:-none})"
echo "$figures" | while IFS='=' read -r name value; do
    printf '  %-28s %s\n' "$name" "$value"
    echo "SOAK-FIGURE $name $value"
done

failed=0
problem() { echo "soak: FAIL: $*"; failed=1; }
[ $rc -eq 0 ] || problem "pinsight exited $rc after SIGTERM"
[ "$stops" -eq "$cycles" ] || problem "$stops unplugs logged, $cycles cycles"
[ "$backs" -eq "$cycles" ] || problem "$backs returns logged, $cycles cycles"
[ $accounted -eq $captured ] \
    || problem "results + skipped + dropped = $accounted, frames (the last frame + 1) = $captured"
if [ "$broken" -ne 0 ]; then
    problem "$broken result lines where lines so far + skipped + dropped != frame + 1; the first:"
    echo "$line_check" | sed '$d'
fi
[ "$summary" = "$results ${skipped:-0} ${dropped:-0}" ] \
    || problem "the log's summary ($summary) is not the last line's counts ($results ${skipped:-0} ${dropped:-0})"
[ "$fds1" -le "$fds0" ] || problem "open file descriptors grew from $fds0 to $fds1"
[ "$maps1" -le "$maps0" ] || problem "mappings of the video device grew from $maps0 to $maps1"
[ $((rss1 - rss0)) -le $tolerance_kib ] || problem "VmRSS grew from $rss0 to $rss1 KiB, more than $tolerance_kib KiB"
[ $failed -eq 0 ] || exit 1
echo "soak: ok ($cycles cycles, $results results, $accounted of $captured frames accounted for)"
