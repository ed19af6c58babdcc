#!/bin/sh
# Guest script for tests/qemu/run-e2e --gpio-sim: proves the out-of-tree gpio-sim module works
# with busybox tools only. Creates a simulated chip with 4 lines and checks
#  1. its character device and sysfs entries (gpio bus device, label and size in /sys/class/gpio);
#  2. the simulator side on unrequested lines: writing sim_gpioN/pull changes sim_gpioN/value;
#  3. a consumer reading an input: line 0 requested as input through the legacy sysfs interface
#     (/sys/class/gpio/export) follows the simulated pull;
#  4. a consumer driving an output: line 2 requested as output through the same interface, and
#     sim_gpio2/value reads what it drives (the pull does not override it);
#  5. taking the chip down again (gpio-sim-chip --remove): its device node goes away.
# The GPIO character device's ioctls (what libgpiod and pinsight use) are not exercised: busybox
# has no gpioget/gpioset.
#
#   tests/qemu/run-e2e --binary /tmp/e2e-bin/pinsight --guest-script tests/qemu/gpio-smoke.sh --gpio-sim
set -u

fail() { echo "gpio-smoke: FAIL: $*"; exit 1; }
step() { echo; echo "== $*"; }
expect() { # expect FILE VALUE WHAT
    got=$(cat "$1") || fail "cannot read $1"
    [ "$got" = "$2" ] || fail "$3: $1 is '$got', expected '$2'"
    echo "ok: $3 ($1 = $got)"
}

name=pinsight-sim
step "create gpio-sim chip '$name' with 4 lines"
out=$(gpio-sim-chip "$name" 4 button0 button1 led0 led1) || fail "gpio-sim-chip failed"
echo "gpio-sim-chip: $out"
# shellcheck disable=SC2086 # two words
set -- $out
dev=$1 sysdir=$2
chip=${dev#/dev/}
[ -c "$dev" ] || fail "$dev is not a character device"
ls -l /dev/gpiochip*
[ "$(readlink -f "/sys/bus/gpio/devices/$chip")" = "$sysdir" ] \
    || fail "/sys/bus/gpio/devices/$chip does not point to $sysdir"
echo "ok: /sys/bus/gpio/devices/$chip -> $sysdir"
[ "$(cat "/sys/bus/gpio/devices/$chip/dev")" = "$(stat -c '%t:%T' "$dev" | { IFS=: read -r ma mi; echo "$((0x$ma)):$((0x$mi))"; })" ] \
    || fail "$dev's device number differs from /sys/bus/gpio/devices/$chip/dev"
echo "ok: $dev is $(cat "/sys/bus/gpio/devices/$chip/dev")"

# The legacy sysfs class (CONFIG_GPIO_SYSFS) names chips by their first GPIO number.
legacy=
for c in /sys/class/gpio/gpiochip*; do
    [ "$(cat "$c/label")" = "$name" ] && legacy=$c
done
[ -n "$legacy" ] || fail "no /sys/class/gpio/gpiochip* labelled $name"
expect "$legacy/ngpio" 4 "number of lines"
base=$(cat "$legacy/base")
echo "ok: $legacy ($(readlink -f "$legacy")), label $name, GPIOs $base-$((base + 3))"

step "pull unrequested lines up and down"
for n in 0 1 2 3; do
    expect "$sysdir/sim_gpio$n/pull" pull-down "line $n starts pulled down"
    expect "$sysdir/sim_gpio$n/value" 0 "line $n starts low"
    echo pull-up > "$sysdir/sim_gpio$n/pull" || fail "cannot write $sysdir/sim_gpio$n/pull"
    expect "$sysdir/sim_gpio$n/value" 1 "line $n pulled up"
    echo pull-down > "$sysdir/sim_gpio$n/pull" || fail "cannot write $sysdir/sim_gpio$n/pull"
    expect "$sysdir/sim_gpio$n/value" 0 "line $n pulled down"
done

step "line 0 as a consumer's input (sysfs export)"
gpio=$((base + 0))
echo "$gpio" > /sys/class/gpio/export || fail "cannot export GPIO $gpio"
g=/sys/class/gpio/gpio$gpio
[ -d "$g" ] || { ls /sys/class/gpio; fail "no $g after export"; }
echo in > "$g/direction" || fail "cannot set $g/direction"
expect "$g/value" 0 "input reads the pull-down"
echo pull-up > "$sysdir/sim_gpio0/pull"
expect "$g/value" 1 "input reads the pull-up"
echo pull-down > "$sysdir/sim_gpio0/pull"
expect "$g/value" 0 "input reads the pull-down again"
echo "$gpio" > /sys/class/gpio/unexport || fail "cannot unexport GPIO $gpio"

step "line 2 as a consumer's output (sysfs export)"
gpio=$((base + 2))
echo "$gpio" > /sys/class/gpio/export || fail "cannot export GPIO $gpio"
g=/sys/class/gpio/gpio$gpio
[ -d "$g" ] || { ls /sys/class/gpio; fail "no $g after export"; }
echo out > "$g/direction" || fail "cannot set $g/direction"
echo 1 > "$g/value" || fail "cannot write $g/value"
expect "$sysdir/sim_gpio2/value" 1 "simulator sees the output driven high"
echo pull-down > "$sysdir/sim_gpio2/pull"
expect "$sysdir/sim_gpio2/value" 1 "a pull does not override the output"
echo 0 > "$g/value" || fail "cannot write $g/value"
expect "$sysdir/sim_gpio2/value" 0 "simulator sees the output driven low"
echo "$gpio" > /sys/class/gpio/unexport || fail "cannot unexport GPIO $gpio"

step "remove the chip"
gpio-sim-chip --remove "$name" || fail "gpio-sim-chip --remove failed"
i=0
while [ -e "$dev" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
[ ! -e "$dev" ] || fail "$dev still exists after removing the chip"
[ ! -e "/sys/bus/gpio/devices/$chip" ] || fail "/sys/bus/gpio/devices/$chip still exists"
echo "ok: $dev and /sys/bus/gpio/devices/$chip are gone"

step "gpio-smoke: all checks passed"
