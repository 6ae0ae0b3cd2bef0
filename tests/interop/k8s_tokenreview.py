#!/usr/bin/env python3
"""TokenReview interop check with the official Kubernetes Python client.

Usage: k8s_tokenreview.py BASE_URL TOKEN [AUDIENCE ...]

Sends one authentication.k8s.io/v1 TokenReview through
kubernetes.client.AuthenticationV1Api.create_token_review and prints, as one JSON
object on stdout, what the client parsed: {"apiVersion", "kind", "status"}.

Exit codes: 0 success; 1 the client raised (details on stderr); 2 bad usage;
3 the `kubernetes` module is not installed.
"""

import json
import sys
import traceback

EXIT_CLIENT_ERROR = 1
EXIT_USAGE = 2
EXIT_NO_MODULE = 3


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return EXIT_USAGE
    url, token, audiences = argv[1], argv[2], argv[3:]
    try:
        import kubernetes.client as k8s
    except ImportError as e:
        print(f"kubernetes Python client not importable: {e}", file=sys.stderr)
        return EXIT_NO_MODULE

    configuration = k8s.Configuration(host=url)
    with k8s.ApiClient(configuration) as api_client:
        api = k8s.AuthenticationV1Api(api_client)
        spec = k8s.V1TokenReviewSpec(token=token, audiences=audiences or None)
        try:
            review = api.create_token_review(k8s.V1TokenReview(spec=spec))
        except Exception as e:  # noqa: BLE001 - report anything the client raises
            print(f"create_token_review failed: {type(e).__name__}: {e}", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            return EXIT_CLIENT_ERROR
        out = {
            "apiVersion": review.api_version,
            "kind": review.kind,
            "status": api_client.sanitize_for_serialization(review.status),
        }
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
