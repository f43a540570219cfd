#!/bin/sh
# Regenerate the `tumbler sniff` captures (needs root, tcpdump, nft, the venv with dpkt).
# Two namespaces joined by a veth pair; tcpdump runs on the server's side. Everything
# the script creates is removed on exit. Run from the repository root.
set -eu
PY=${PY:-.venv/bin/python}
OUT=${OUT:-tests/data}
C=tsniff-c-$$
S=tsniff-s-$$
cleanup() {
    [ -n "${DUMP:-}" ] && kill "$DUMP" 2>/dev/null || true
    [ -n "${LISTEN:-}" ] && kill "$LISTEN" 2>/dev/null || true
    ip netns del "$C" 2>/dev/null || true
    ip netns del "$S" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
ip netns add "$C"
ip netns add "$S"
ip -n "$C" link add veth0 type veth peer name veth0 netns "$S"
for ns in "$C" "$S"; do ip -n "$ns" link set lo up; ip -n "$ns" link set veth0 up; done
ip -n "$C" addr add 10.77.0.1/24 dev veth0
ip -n "$S" addr add 10.77.0.2/24 dev veth0
ip -n "$C" addr add fd77::1/64 dev veth0 nodad
ip -n "$S" addr add fd77::2/64 dev veth0 nodad

capture() {  # $1 file, $2 nft ports to drop (or empty): start tcpdump and a listener on 2222
    if [ -n "$2" ]; then
        ip netns exec "$S" nft -f - <<NFT
table inet tsniff {
    chain inp {
        type filter hook input priority 0;
        tcp dport { $2 } drop
    }
}
NFT
    fi
    ip netns exec "$S" "$PY" -c '
import socket
s4 = socket.socket(socket.AF_INET); s4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s4.bind(("10.77.0.2", 2222)); s4.listen()
s6 = socket.socket(socket.AF_INET6); s6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s6.bind(("fd77::2", 2222)); s6.listen()
import select
while True:
    r, _, _ = select.select([s4, s6], [], [])
    for s in r:
        c, _ = s.accept(); c.recv(100); c.sendall(b"bye\n"); c.close()
' &
    LISTEN=$!
    ip netns exec "$S" tcpdump -n -U -s 256 -i veth0 -w "$1" 'tcp or udp' 2>/dev/null &
    DUMP=$!
    sleep 1.5
}

finish() {
    sleep 1
    kill "$DUMP"; wait "$DUMP" || true; DUMP=
    kill "$LISTEN"; wait "$LISTEN" 2>/dev/null || true; LISTEN=
    ip netns exec "$S" nft delete table inet tsniff 2>/dev/null || true
}

# Capture 1 (the article's scene): knocks on 42, 196, 69 that the server's firewall
# drops (each connect gives up after 1.3 s, so each SYN is retransmitted once), a
# real connection to the open port 2222, a Tumbler knock for 10.77.0.1 sent twice
# (a replay) and one made for 10.77.0.99 but sent from 10.77.0.1 (not for its source).
capture "$OUT/sniff-knocks.pcap" "42, 196, 69"
ip netns exec "$C" "$PY" - <<'PYEOF'
import socket, time
from datetime import UTC, datetime
from tumbler.protocol import make_knock

for port in (42, 196, 69):
    s = socket.socket(); s.settimeout(1.3)
    try:
        s.connect(("10.77.0.2", port))
    except OSError:
        pass
    s.close()
s = socket.create_connection(("10.77.0.2", 2222)); s.sendall(b"hello\n"); s.recv(10); s.close()
time.sleep(0.2)
now = datetime.now(UTC)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
good = make_knock("open-pAsSwOrD", "10.77.0.1", now)
u.sendto(good, ("10.77.0.2", 8675))
time.sleep(0.2)
u.sendto(good, ("10.77.0.2", 8675))
u.sendto(make_knock("open-pAsSwOrD", "10.77.0.99", now), ("10.77.0.2", 8675))
PYEOF
finish

# Capture 2 (no firewall): IPv6 and IPv4 connection attempts to closed ports answered
# by RST, a real IPv6 connection to 2222, and a classic UDP knock to udp/500.
capture "$OUT/sniff-rst-v6.pcap" ""
ip netns exec "$C" "$PY" - <<'PYEOF'
import socket
for fam, host, port in ((socket.AF_INET6, "fd77::2", 7000), (socket.AF_INET, "10.77.0.2", 8000)):
    s = socket.socket(fam); s.settimeout(1)
    try:
        s.connect((host, port))
    except OSError:
        pass
    s.close()
s = socket.create_connection(("fd77::2", 2222)); s.sendall(b"hello\n"); s.recv(10); s.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(b"x", ("10.77.0.2", 500))
PYEOF
finish

# pcapng: tcpdump 4.99 writes only pcap, so the first capture is rewritten as pcapng
# (same packets and timestamps) with dpkt's writer.
"$PY" - "$OUT/sniff-knocks.pcap" "$OUT/sniff-knocks.pcapng" <<'PYEOF'
import sys
import dpkt
with open(sys.argv[1], "rb") as f, open(sys.argv[2], "wb") as g:
    r = dpkt.pcap.Reader(f)
    w = dpkt.pcapng.Writer(g, snaplen=r.snaplen, linktype=r.datalink())
    for ts, buf in r:
        w.writepkt(buf, ts=ts)
PYEOF

# Text renderings as tcpdump prints them, in the forms `tumbler sniff` reads.
for base in sniff-knocks sniff-rst-v6; do
    tcpdump -n -r "$OUT/$base.pcap" > "$OUT/$base.txt" 2>/dev/null
    tcpdump -t -n -r "$OUT/$base.pcap" > "$OUT/$base.t.txt" 2>/dev/null
    tcpdump -v -n -r "$OUT/$base.pcap" > "$OUT/$base.v.txt" 2>/dev/null
done
tcpdump -tttt -n -r "$OUT/sniff-knocks.pcap" > "$OUT/sniff-knocks.tttt.txt" 2>/dev/null
tcpdump -tt -n -X -r "$OUT/sniff-knocks.pcap" > "$OUT/sniff-knocks.ttX.txt" 2>/dev/null
tcpdump -n -A -r "$OUT/sniff-knocks.pcap" > "$OUT/sniff-knocks.A.txt" 2>/dev/null
