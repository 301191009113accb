"""Consented reads through a node's client API from Python (grpcio), for
`maillon bench`: the same calls the Rust client makes, from another stack.

Prints one JSON object: the sequential p50 and p99 in milliseconds and the
reads per second with CONCURRENCY calls in flight. The bearer token comes
from the MAILLON_TOKEN environment variable, never from the command line.
"""

import argparse
import json
import os
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stubs", required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--cert", required=True, help="the node's certificate (PEM)")
    parser.add_argument("--server-name", required=True)
    parser.add_argument("--dossier", required=True)
    parser.add_argument("--owner", required=True)
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    sys.path.insert(0, args.stubs)

    import grpc
    from maillon.v1 import client_pb2, client_pb2_grpc

    with open(args.cert, "rb") as f:
        root = f.read()
    credentials = grpc.ssl_channel_credentials(root_certificates=root)
    channel = grpc.secure_channel(
        args.endpoint,
        credentials,
        options=[("grpc.ssl_target_name_override", args.server_name)],
    )
    stub = client_pb2_grpc.ClientStub(channel)
    metadata = (("authorization", "Bearer " + os.environ["MAILLON_TOKEN"]),)
    request = client_pb2.ReadShareRequest(
        dossier=args.dossier,
        section="housing",
        owner=args.owner,
        purpose="mesure",
    )

    for _ in range(50):
        stub.ReadShare(request, metadata=metadata)

    samples = []
    for _ in range(args.reads):
        t = time.perf_counter()
        stub.ReadShare(request, metadata=metadata)
        samples.append(time.perf_counter() - t)
    samples.sort()

    def pct(p: float) -> float:
        return samples[min(len(samples) - 1, round((len(samples) - 1) * p))] * 1e3

    started = time.perf_counter()
    in_flight = []
    done = 0
    for _ in range(args.reads):
        in_flight.append(stub.ReadShare.future(request, metadata=metadata))
        if len(in_flight) >= args.concurrency:
            in_flight.pop(0).result()
            done += 1
    for f in in_flight:
        f.result()
        done += 1
    rate = done / (time.perf_counter() - started)

    print(json.dumps({"p50_ms": pct(0.5), "p99_ms": pct(0.99), "reads_per_s": rate}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # one line on standard error, for the bench
        code = getattr(e, "code", None)
        details = getattr(e, "details", None)
        if callable(code) and callable(details):
            print(f"{code()}: {details()}", file=sys.stderr)
        else:
            print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
