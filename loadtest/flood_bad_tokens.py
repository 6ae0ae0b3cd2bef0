"""Send COUNT distinct bad tokens (numbers START..START+COUNT) to 127.0.0.1:PORT, one GET each,
pipelined in batches over one keep-alive connection; print how many were refused with 401.
Each token is a well-formed JWT for ISS and AUD that expired long ago (rejected before any
signature work, and negatively cached), made unique by its jti. Used by scenarios.sh n."""
import base64
import json
import socket
import sys

port, start, count, iss, aud = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]


def b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).rstrip(b"=")


header = b64({"alg": "RS256", "kid": "k1", "typ": "JWT"})
claims = {"iss": iss, "aud": [aud], "sub": "system:serviceaccount:flood:flood", "iat": 1000, "exp": 2000}
s = socket.create_connection(("127.0.0.1", port))
refused, batch = 0, 500
for first in range(start, start + count, batch):
    n = min(batch, start + count - first)
    reqs = []
    for i in range(first, first + n):
        claims["jti"] = str(i)
        token = header + b"." + b64(claims) + b".c2ln"
        reqs.append(b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + b"\r\n\r\n")
    s.sendall(b"".join(reqs))
    buf = b""
    while buf.count(b"HTTP/1.1 ") < n:
        data = s.recv(1 << 20)
        if not data:
            raise SystemExit("connection closed by the proxy")
        buf += data
    refused += buf.count(b"HTTP/1.1 401")
print(refused)
