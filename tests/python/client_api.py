"""The client API from stock Python grpcio, as a partner's developer scripts
it: the node's certificate fetched and checked against the profile's pin
(SHA-256 of its SubjectPublicKeyInfo), then health, reflection, a
caseworker's read and an auditor's tail. Prints one JSON object.

The tokens come from the environment (MAILLON_CASEWORKER_TOKEN,
MAILLON_AUDITOR_TOKEN), never from the command line. Exit 3 when the
certificate does not match the pin: nothing is sent then.
"""

import argparse
import hashlib
import json
import os
import ssl
import sys
import tomllib


def pinned_certificate(endpoint: str, pin: str) -> bytes:
    """The node's certificate (PEM), if its SPKI hashes to `pin`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    host, port = endpoint.rsplit(":", 1)
    pem = ssl.get_server_certificate((host, int(port))).encode()
    cert = x509.load_pem_x509_certificate(pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    if hashlib.sha256(spki).hexdigest() != pin.lower():
        print(f"the node's certificate does not match the profile's pin {pin}", file=sys.stderr)
        sys.exit(3)
    return pem


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stubs", required=True)
    parser.add_argument("--profile", required=True, help="a maillon client profile (TOML)")
    parser.add_argument("--dossier", required=True)
    parser.add_argument("--owner", required=True)
    args = parser.parse_args()
    sys.path.insert(0, args.stubs)

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    from maillon.v1 import client_pb2, client_pb2_grpc

    with open(args.profile, "rb") as f:
        profile = tomllib.load(f)
    root = pinned_certificate(profile["endpoint"], profile["server_spki_sha256"])
    channel = grpc.secure_channel(
        profile["endpoint"],
        grpc.ssl_channel_credentials(root_certificates=root),
        options=[("grpc.ssl_target_name_override", profile["member"] + ".maillon")],
    )

    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    services = [s.name for a in answers for s in a.list_services_response.service]

    client = client_pb2_grpc.ClientStub(channel)
    caseworker = (("authorization", "Bearer " + os.environ["MAILLON_CASEWORKER_TOKEN"]),)
    read = client.ReadShare(
        client_pb2.ReadShareRequest(
            dossier=args.dossier,
            section="housing",
            owner=args.owner,
            purpose="instruction d'un droit",
        ),
        metadata=caseworker,
    )
    auditor = (("authorization", "bearer " + os.environ["MAILLON_AUDITOR_TOKEN"]),)
    tail = client.AuditTail(client_pb2.AuditTailRequest(limit=10), metadata=auditor)
    try:
        client.AuditTail(client_pb2.AuditTailRequest(limit=10), metadata=caseworker)
        tail_as_caseworker = "OK"
    except grpc.RpcError as e:
        tail_as_caseworker = e.code().name

    print(
        json.dumps(
            {
                "health": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status),
                "services": sorted(services),
                "read": read.json,
                "tail_events": len(tail.events),
                "tail_first": json.loads(tail.events[0].json)["event"] if tail.events else None,
                "tail_as_caseworker": tail_as_caseworker,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
