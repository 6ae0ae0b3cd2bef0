#!/usr/bin/env python3
"""A minimal kube-apiserver stand-in for load tests of `bound_objects = true`: it serves, as
metadata-only lists and watches, the service account, pod and node that the given token is
bound to (read from the token's claims), so the proxy's watches sync and the token stays valid.
Watches stay open (a BOOKMARK every 10 s) until their timeoutSeconds. A SubjectAccessReview
POST is answered allowed (for `AUTHZ=sar` in instructions.sh).

Usage: fake_apiserver.py PORT TOKEN
"""
import base64
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

port, token = int(sys.argv[1]), sys.argv[2]
payload = token.split(".")[1]
claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
kube = claims.get("kubernetes.io", {})
ns = kube.get("namespace", "default")
OBJECTS = {"serviceaccounts": [], "pods": [], "secrets": [], "nodes": []}
for kind, key, namespaced in [("serviceaccounts", "serviceaccount", True), ("pods", "pod", True),
                              ("secrets", "secret", True), ("nodes", "node", False)]:
    ref = kube.get(key)
    if ref:
        meta = {"name": ref["name"], "uid": ref["uid"], "resourceVersion": "10"}
        if namespaced:
            meta["namespace"] = ns
        OBJECTS[kind].append({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                              "metadata": meta})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urlparse(self.path)
        kind = url.path.rstrip("/").split("/")[-1]
        q = parse_qs(url.query)
        if kind not in OBJECTS:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if q.get("watch", [""])[0] not in ("1", "true", "True"):
            body = json.dumps({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                               "metadata": {"resourceVersion": "10"}, "items": OBJECTS[kind]})
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())
            return
        self.end_headers()
        deadline = time.time() + int(q.get("timeoutSeconds", ["60"])[0])
        bookmark = json.dumps({"type": "BOOKMARK", "object": {
            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": "10"}}}) + "\n"
        try:
            while time.time() < deadline:
                self.wfile.write(bookmark.encode())
                self.wfile.flush()
                time.sleep(min(10, max(0.1, deadline - time.time())))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if not self.path.startswith("/apis/authorization.k8s.io/v1/subjectaccessreviews"):
            self.send_response(404)
            self.end_headers()
            return
        body["status"] = {"allowed": True, "reason": "load test"}
        out = json.dumps(body).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
