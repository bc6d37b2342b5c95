"""Whether Kafka lets us in, asked once before a component starts its clients.

aiokafka retries a refused connection like an unreachable one and logs the cause; a component would
then wait forever on a wrong password or an untrusted certificate. One handshake with each bootstrap
server tells the two apart: refusals end the component with one line that says what to fix, while an
unreachable broker is left to the clients' own retries (it may be starting).
"""

from __future__ import annotations

import asyncio
import ssl

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, KafkaError, SaslAuthenticationFailed

from pioneer_base.config import KafkaSettings


class KafkaAccessDenied(RuntimeError):
    """The cluster answered and refused us: credentials or TLS settings are wrong; retrying cannot help."""


async def check_access(kafka: KafkaSettings, timeout_s: float = 10.0) -> None:
    """Raise `KafkaAccessDenied` if a bootstrap server refuses the connection `kafka` describes."""
    options = kafka.client_options()
    del options["bootstrap_servers"]
    for server in kafka.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            connection = await asyncio.wait_for(
                create_conn(host, int(port), request_timeout_ms=int(timeout_s * 1000), **options), timeout_s
            )
        except SaslAuthenticationFailed:
            raise KafkaAccessDenied(
                f"Kafka at {server} refused user {kafka.sasl_username!r} ({kafka.sasl_mechanism}): "
                "wrong username or password (PIONEER_KAFKA_SASL_USERNAME, PIONEER_KAFKA_SASL_PASSWORD)"
            ) from None
        except ssl.SSLCertVerificationError as error:
            raise KafkaAccessDenied(
                f"Kafka at {server} presented a certificate we do not trust ({error.verify_message}): "
                "set PIONEER_KAFKA_SSL_CAFILE to the CA that signed it"
            ) from None
        except ssl.SSLError as error:
            raise KafkaAccessDenied(
                f"TLS with Kafka at {server} failed ({error.reason}): is the listener TLS "
                f"(PIONEER_KAFKA_SECURITY_PROTOCOL={kafka.security_protocol})?"
            ) from None
        except KafkaConnectionError as error:
            if "closed" not in str(error):
                continue
            raise KafkaAccessDenied(
                f"Kafka at {server} closed the connection during the handshake: the listener expects other "
                f"security (PIONEER_KAFKA_SECURITY_PROTOCOL={kafka.security_protocol}), or a client "
                "certificate (PIONEER_KAFKA_SSL_CERTFILE, PIONEER_KAFKA_SSL_KEYFILE)"
            ) from None
        except (OSError, TimeoutError, KafkaError):
            continue  # not reachable now: the clients retry
        connection.close()
        return
