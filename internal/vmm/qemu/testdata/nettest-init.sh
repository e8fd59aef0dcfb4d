#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_mmio virtio_blk virtio_console failover net_failover virtio_net virtio_balloon; do insmod /m/$m.ko; done
echo NETTEST-BOOTED
if [ "$pyro_net" = 1 ]; then
  ip link set lo up; ip link set eth0 up; ip addr add $pyro_ip dev eth0; ip route add default via $pyro_gw
  nslookup deb.debian.org $pyro_dns 2>&1 | tail -2; nslookup deb.debian.org $pyro_dns 2>&1 | grep -q "Address.*203" && echo NET-DNS-OK || echo NET-DNS-FAIL
  printf "GET /debian/dists/bookworm/Release HTTP/1.0\r\nHost: deb.debian.org\r\n\r\n" | nc -w 5 $pyro_egress_ip 80 | head -1 | grep -q "HTTP/1" && echo NET-EGRESS-OK || echo NET-EGRESS-FAIL
  printf "GET / HTTP/1.0\r\n\r\n" | nc -w 3 $pyro_gw $pyro_hostport | grep -q HOSTSECRET && echo NET-HOSTLOOP-REACHED || echo NET-HOSTLOOP-BLOCKED
  printf "GET / HTTP/1.0\r\n\r\n" | nc -w 3 $pyro_hostip $pyro_hostport | grep -q HOSTSECRET && echo NET-HOSTIP-REACHED || echo NET-HOSTIP-BLOCKED
fi
echo NETTEST-DONE
echo o > /proc/sysrq-trigger
sleep 5
