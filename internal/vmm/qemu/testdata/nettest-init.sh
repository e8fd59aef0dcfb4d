#!/bin/busybox sh
# /init of the network-test initramfs (see net_test.go): busybox-static, the
# environment's virtio modules, and this script. It configures eth0 the way
# pyro's agent does (from pyro_net, pyro_ip, pyro_gw, pyro_dns), then runs
# each line the test sends over the virtio-serial port "pyro.agent" as a
# shell command and answers with its output and a line "@@END <status>".
# It contacts nothing by itself: every address comes from the test.
/bin/busybox mkdir -p /bin /proc /sys /dev /etc /tmp /www
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_mmio virtio_console failover net_failover virtio_net; do
  f=$(find /lib/modules -name "$m.ko" | head -n 1)
  [ -n "$f" ] && insmod "$f"
done
if [ "$pyro_net" = 1 ]; then
  ip link set lo up
  ip link set eth0 up
  ip addr add "$pyro_ip" dev eth0
  ip route add default via "$pyro_gw"
  echo "nameserver $pyro_dns" > /etc/resolv.conf
fi

# resolve HOST: its first IPv4 address, asked with busybox's own DNS
# client (the static busybox's libc cannot look names up).
resolve() {
  case "$1" in
  *[!0-9.]*) nslookup "$1" 2>/dev/null | awk '/^Name:/ { n = 1 } n && /^Address/ { print $NF; exit }' ;;
  *) echo "$1" ;;
  esac
}
# get URL: fetch an http URL to stdout (timeout $T, default 5 s).
get() {
  rest=${1#http://}
  hostport=${rest%%/*}
  path=/${rest#*/}
  [ "$rest" = "$hostport" ] && path=/
  host=${hostport%%:*}
  ip=$(resolve "$host")
  if [ -z "$ip" ]; then
    echo "bad address '$host'"
    return 1
  fi
  # (busybox 1.35's wget -T crashes; timeout(1) bounds it instead.)
  timeout "${T:-5}" wget -q -O - --header "Host: $hostport" "http://$ip${hostport#"$host"}$path"
}
# timed CMD...: run CMD, then print "rc=STATUS ms=MILLISECONDS" on a line.
timed() {
  a=$(now)
  "$@"
  rc=$?
  b=$(now)
  echo
  echo "rc=$rc ms=$(awk "BEGIN { print int(($b - $a) * 1000) }")"
}
# probe URL: fetch URL and print one line "rc=STATUS ms=MILLISECONDS BODY".
now() { cut -d ' ' -f 1 /proc/uptime; }
probe() {
  a=$(now)
  body=$(get "$1" 2>&1)
  rc=$?
  b=$(now)
  echo "rc=$rc ms=$(awk "BEGIN { print int(($b - $a) * 1000) }") $(echo "$body" | tr '\n' ' ')"
}

port=
for p in /sys/class/virtio-ports/*; do
  [ "$(cat "$p/name")" = pyro.agent ] && port=/dev/${p##*/}
done
if [ -z "$port" ]; then
  echo "NETTEST: no pyro.agent port"
  echo o > /proc/sysrq-trigger
fi
exec 3<>"$port"
echo "@@READY" >&3
while read -r line <&3; do
  eval "$line" >&3 2>&1
  echo "@@END $?" >&3
done
echo o > /proc/sysrq-trigger
sleep 5
