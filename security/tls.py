"""TLS settings for the wss listener: TLS 1.2/1.3, the OCPP cipher suites, RSA and ECDSA chains.

OCPP 1.6 security whitepaper (A00.FR.317/318) and 2.0.1 part 2 (A00.FR.412/413) require TLS 1.2 or
higher and, for a CSMS, these TLS 1.2 suites: TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_RSA_WITH_AES_128_GCM_SHA256 and
TLS_RSA_WITH_AES_256_GCM_SHA384. Python's default server context leaves the two RSA key-exchange
suites out, so the list is set explicitly; the ECDHE-RSA GCM suites are added, and nothing with CBC,
RC4, 3DES or below 128 bits. TLS 1.3 suites are OpenSSL's (all AEAD, at least 128 bits).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path

TLS12_CIPHERS: tuple[str, ...] = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "AES128-GCM-SHA256",  # TLS_RSA_WITH_AES_128_GCM_SHA256, required by OCPP
    "AES256-GCM-SHA384",  # TLS_RSA_WITH_AES_256_GCM_SHA384, required by OCPP
)

# IANA numbers of the suites above and of the TLS 1.3 suites (for the ASGI TLS extension).
CIPHER_SUITE_IDS: dict[str, int] = {
    "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
    "ECDHE-ECDSA-AES256-GCM-SHA384": 0xC02C,
    "ECDHE-RSA-AES128-GCM-SHA256": 0xC02F,
    "ECDHE-RSA-AES256-GCM-SHA384": 0xC030,
    "AES128-GCM-SHA256": 0x009C,
    "AES256-GCM-SHA384": 0x009D,
    "TLS_AES_128_GCM_SHA256": 0x1301,
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
}
TLS_VERSION_IDS: dict[str, int] = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def server_context(
    credentials: Sequence[tuple[Path, Path]], client_ca_pem: bytes | None
) -> ssl.SSLContext:
    """A server context serving every (chain, key) pair, asking for (not requiring) client certs.

    `client_ca_pem` holds the anchors and intermediates client chains are verified against; the
    policy decides per charge point whether a certificate is required (profile 3).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_ciphers(":".join(TLS12_CIPHERS))
    context.options |= (
        ssl.OP_NO_TICKET  # no stateless resumption; the app re-checks certificates anyway
        | ssl.OP_NO_COMPRESSION
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_NO_RENEGOTIATION
        | ssl.OP_SINGLE_ECDH_USE
    )
    # TLS 1.3 tickets, stateful under OP_NO_TICKET, would put two sessions per handshake in the
    # server's cache (about 3 KiB per connection, kept for minutes after it closed) and let a
    # resumed session skip certificate verification: none are issued. (TLS 1.2 session ids stay
    # cached by OpenSSL, which Python cannot turn off; the application re-checks certificates.)
    context.num_tickets = 0
    context.set_alpn_protocols(["http/1.1"])
    for chain, key in credentials:
        context.load_cert_chain(chain, key)
    if client_ca_pem:
        context.load_verify_locations(cadata=client_ca_pem.decode("ascii"))
        context.verify_mode = ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
    return context
