# A real sd_notify socket for tests: binds a unix datagram socket (Node cannot) and prints
# every datagram it receives as one JSON line. Exits after the given number of seconds.
import json
import socket
import sys
import time

path, lifetime = sys.argv[1], float(sys.argv[2])
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
print(json.dumps({"listening": path}), flush=True)
deadline = time.monotonic() + lifetime
while True:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        break
    sock.settimeout(remaining)
    try:
        data = sock.recv(65536)
    except socket.timeout:
        break
    print(json.dumps({"message": data.decode("utf-8", "replace"), "monotonicUsec": time.monotonic_ns() // 1000}), flush=True)
