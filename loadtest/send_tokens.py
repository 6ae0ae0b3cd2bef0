"""Send one GET per token (lines START..START+COUNT of FILE) to 127.0.0.1:PORT, pipelined in
batches over one keep-alive connection; print how many responses were 2xx. Used to fill the
verification cache for the memory scenarios."""
import socket
import sys

path, port, start, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
tokens = open(path).read().split()[start:start + count]
s = socket.create_connection(("127.0.0.1", port))
ok, batch = 0, 200
for i in range(0, len(tokens), batch):
    chunk = tokens[i:i + batch]
    s.sendall(b"".join(b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + t.encode() + b"\r\n\r\n" for t in chunk))
    buf = b""
    while buf.count(b"HTTP/1.1 ") < len(chunk):
        data = s.recv(1 << 20)
        if not data:
            raise SystemExit("connection closed by the proxy")
        buf += data
    ok += buf.count(b"HTTP/1.1 200")
print(ok)
