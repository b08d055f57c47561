"""The physical floor of a durable write on this machine: p50 of a 128-byte append + fdatasync
(in a temp directory under /tmp) and p50 of a 32-byte loopback TCP echo (TCP_NODELAY),
1,500 samples each, interleaved. Prints fdatasync + 2 RTT and 1.5x that (issue 13's goal for
a single-client durable set on 3 nodes). Used by write_path.sh."""
import os
import socket
import tempfile
import threading
import time

d = tempfile.mkdtemp(dir="/tmp")
fd = os.open(d + "/f", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
record = b"x" * 128
fsyncs, rtts = [], []
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
port = srv.getsockname()[1]


def echo():
    c, _ = srv.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        x = c.recv(64)
        if not x:
            break
        c.sendall(x)


threading.Thread(target=echo, daemon=True).start()
cl = socket.create_connection(("127.0.0.1", port))
cl.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for _ in range(1500):
    s = time.perf_counter()
    os.write(fd, record)
    os.fdatasync(fd)
    fsyncs.append(time.perf_counter() - s)
    s = time.perf_counter()
    cl.sendall(b"y" * 32)
    n = 0
    while n < 32:
        n += len(cl.recv(64))
    rtts.append(time.perf_counter() - s)
fsyncs.sort()
rtts.sort()
f = fsyncs[len(fsyncs) // 2] * 1e6
r = rtts[len(rtts) // 2] * 1e6
print(f"floor: fdatasync p50 {f:.0f} us, loopback RTT p50 {r:.0f} us (python), "
      f"fsync+2RTT {f + 2 * r:.0f} us, 1.5x = {1.5 * (f + 2 * r):.0f} us")
os.close(fd)
os.unlink(d + "/f")
os.rmdir(d)
