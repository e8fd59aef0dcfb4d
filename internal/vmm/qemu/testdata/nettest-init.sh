#!/bin/busybox sh
# /init of the network-test initramfs (see TestNetworkIsolation). It only
# contacts this machine and the Debian mirror the host's apt uses
# ($pyro_mirror, with its host name $pyro_dnsname): never the gateway or DNS
# addresses for anything but what the backend itself maps to this host.
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_mmio virtio_blk virtio_console failover net_failover virtio_net virtio_balloon; do insmod /m/$m.ko; done
echo NETTEST-BOOTED
if [ "$pyro_net" = 1 ]; then
  ip link set lo up; ip link set eth0 up; ip addr add $pyro_ip dev eth0; ip route add default via $pyro_gw
  # DNS: the backend forwards $pyro_dns:53 to the host's own resolver.
  if [ -n "$pyro_dnsname" ]; then
    nslookup $pyro_dnsname $pyro_dns 2>&1 | grep -q "^Address.*[0-9]" && echo NET-DNS-OK || echo NET-DNS-FAIL
  fi
  if [ -n "$pyro_mirror" ]; then
    wget -q -T 10 -O - $pyro_mirror/dists/bookworm/Release 2>/dev/null | grep -q "^Suite:" && echo NET-EGRESS-OK || echo NET-EGRESS-FAIL
  fi
  # The host's loopback: under slirp the gateway address IS the host's
  # 127.0.0.1 (local); under passt --no-map-gw the gateway is not this
  # machine, so only the guest's own 127.0.0.1 is tried.
  if [ "$pyro_slirp" = 1 ]; then target=$pyro_gw; else target=127.0.0.1; fi
  printf "GET / HTTP/1.0\r\n\r\n" | nc -w 3 $target $pyro_hostport | grep -q HOSTSECRET && echo NET-HOSTLOOP-REACHED || echo NET-HOSTLOOP-BLOCKED
fi
echo NETTEST-DONE
echo o > /proc/sysrq-trigger
sleep 5
