"""A device that calls AWS with its IoT certificate, then publishes over MQTT.

    python examples/iot_demo.py \\
        --endpoint $(aws iot describe-endpoint --endpoint-type iot:CredentialProvider \\
                     --query endpointAddress --output text) \\
        --role-alias my-device-role --thing-name my-thing \\
        --cert device.pem.crt --key private.pem.key \\
        [--mqtt-endpoint $(aws iot describe-endpoint --endpoint-type iot:Data-ATS \\
                           --query endpointAddress --output text)]

With the key in a PKCS#11 token, replace ``--key`` by ``--pkcs11-lib``,
``--token-label`` and ``--key-label`` and put the PIN in $IOT_X509_PKCS11_PIN.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import iot_x509


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", required=True, help="credentials-provider endpoint")
    parser.add_argument("--role-alias", required=True)
    parser.add_argument("--thing-name")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key")
    parser.add_argument("--ca", help="CA bundle (default: the system's trust store)")
    parser.add_argument("--region")
    parser.add_argument("--pkcs11-lib")
    parser.add_argument("--token-label")
    parser.add_argument("--key-label")
    parser.add_argument("--mqtt-endpoint", help="data endpoint; publish one message when given")
    parser.add_argument("--mqtt-port", type=int, default=8883)
    return parser.parse_args()


def pkcs11_config(args: argparse.Namespace) -> dict[str, Any] | None:
    if not args.pkcs11_lib:
        return None
    return {
        "pkcs11_lib": args.pkcs11_lib,
        "user_pin": os.environ.get(iot_x509.PIN_ENV),
        "token_label": args.token_label,
        "private_key_label": args.key_label,
    }


def publish(args: argparse.Namespace, pkcs11: dict[str, Any] | None) -> None:
    from awscrt import mqtt

    client_id = args.thing_name or "iot-demo"
    connection = iot_x509.mqtt_connection(
        args.mqtt_endpoint, client_id, args.cert, args.key, pkcs11=pkcs11, ca=args.ca, port=args.mqtt_port,
    )
    connection.connect().result(10)
    try:
        topic = f"demo/{client_id}/hello"
        sent, _ = connection.publish(topic, json.dumps({"hello": "world"}), mqtt.QoS.AT_LEAST_ONCE)
        sent.result(10)
        print(f"published to {topic}")
    finally:
        connection.disconnect().result(10)


def main() -> int:
    args = parse_args()
    pkcs11 = pkcs11_config(args)
    try:
        session = iot_x509.iot_session(
            args.cert, None if pkcs11 else args.key, args.role_alias, endpoint=args.endpoint,
            thing_name=args.thing_name, ca=args.ca, pkcs11=pkcs11, region_name=args.region,
        )
        identity = session.client("sts").get_caller_identity()
    except iot_x509.IoTError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"calling AWS as {identity['Arn']}")
    if args.mqtt_endpoint:
        publish(args, pkcs11)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
