"""Security profiles 1-3 enforced before the upgrade (OCPP 1.6 security whitepaper section 2,
2.0.1 part 2 A00, test cases TC_A_01..08_CSMS). Real TLS handshakes, certificates from the
project's own CA code, real WebSocket clients."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from security.ca import create_issuing_ca, create_root_ca

from .helpers import AUTH_KEY_HEX, PASSWORD, attempt, basic, client_certificate, client_context

UNAUTHORIZED = 401


# -- profile 0 and 1: plain ws ------------------------------------------------------------------


async def test_profile0_connects_without_credentials(secure):
    assert (await attempt(secure.ws("CP0"))).status == 101


async def test_profile1_valid_basic_auth_is_accepted(secure):
    """TC_A_01_CSMS, A00.FR.202-204: username = identity, password from the record."""
    assert (await attempt(secure.ws("CP1"), auth=basic("CP1", PASSWORD))).status == 101


async def test_profile1_ocpp16_authorization_key_is_the_raw_bytes_of_the_hex_key(secure):
    """A00.FR.205: the 1.6 AuthorizationKey is configured as hex; the header carries its bytes."""
    raw = bytes.fromhex(AUTH_KEY_HEX)
    ok = await attempt(secure.ws("CP16"), auth=basic("CP16", raw), subprotocol="ocpp1.6")
    assert ok.status == 101
    hex_text = await attempt(secure.ws("CP16"), auth=basic("CP16", AUTH_KEY_HEX))
    assert hex_text.status == UNAUTHORIZED


@pytest.mark.parametrize(
    ("identity", "auth", "reason"),
    [
        ("CP1", None, "missing_credentials"),
        ("CP1", basic("CP1", "wrong-password-0000"), "unknown_or_bad_credentials"),
        ("CP1", basic("CP2", PASSWORD), "username_mismatch"),  # TC_A_02_CSMS, A00.FR.204
        ("CP1", "Bearer abc", "missing_credentials"),
        ("CP1", "Basic !!!not-base64", "missing_credentials"),
        ("NOBODY", basic("NOBODY", PASSWORD), "unknown_or_bad_credentials"),
        ("CPOFF", basic("CPOFF", PASSWORD), "record_disabled"),
    ],
)
async def test_profile1_refusals_get_401_before_upgrade_and_a_security_event(
    secure, identity, auth, reason
):
    """TC_A_03_CSMS: invalid password; every failure is 401 with WWW-Authenticate."""
    result = await attempt(secure.ws(identity), auth=auth)
    assert result.status == UNAUTHORIZED
    assert result.headers["www-authenticate"].startswith("Basic realm=")
    event = await secure.events.wait_for(reason)
    assert event.identity == identity
    assert PASSWORD not in (event.detail or "")


async def test_unknown_identity_is_answered_exactly_like_a_bad_password(secure):
    unknown = await attempt(secure.ws("NOBODY"), auth=basic("NOBODY", PASSWORD))
    bad = await attempt(secure.ws("CP1"), auth=basic("CP1", "wrong-password-0000"))
    assert (unknown.status, unknown.body) == (bad.status, bad.body)
    ignore = {"date", "content-length"}
    assert {k: v for k, v in unknown.headers.items() if k not in ignore} == {
        k: v for k, v in bad.headers.items() if k not in ignore
    }


async def test_unknown_identity_gets_404_when_the_operator_opts_in(start_secure):
    gateway = await start_secure(security={"unknown_identity_status": 404})
    assert (await attempt(gateway.ws("NOBODY"))).status == 404
    assert (await gateway.events.wait_for("unknown_identity")).identity == "NOBODY"


async def test_repeated_failures_lock_the_identity_out_even_with_the_right_password(start_secure):
    gateway = await start_secure(security={"max_auth_failures": 3, "lockout_seconds": 60})
    for _ in range(3):
        assert (await attempt(gateway.ws("CP1"), auth=basic("CP1", "x" * 20))).status == 401
    locked = await attempt(gateway.ws("CP1"), auth=basic("CP1", PASSWORD))
    assert locked.status == 429
    assert int(locked.headers["retry-after"]) > 0
    await gateway.events.wait_for("locked_out")


# -- profile 2: TLS + Basic auth ---------------------------------------------------------------


async def test_profile2_tls_with_basic_auth_is_accepted(secure):
    """TC_A_04_CSMS: the client verifies the server certificate (CN localhost) and authenticates."""
    context = client_context(secure.certs_dir)
    result = await attempt(secure.wss("CP2"), auth=basic("CP2", PASSWORD), context=context)
    assert result.status == 101


async def test_profile2_over_plain_ws_is_a_downgrade_even_with_the_right_password(secure):
    result = await attempt(secure.ws("CP2"), auth=basic("CP2", PASSWORD))
    assert result.status == UNAUTHORIZED
    assert (await secure.events.wait_for("downgrade_attempt")).identity == "CP2"


async def test_profile2_wrong_password_over_tls_is_refused(secure):
    context = client_context(secure.certs_dir)
    result = await attempt(secure.wss("CP2"), auth=basic("CP2", "y" * 20), context=context)
    assert result.status == UNAUTHORIZED


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_tls12_and_tls13_are_accepted(secure, version):
    context = client_context(secure.certs_dir, maximum=version)
    context.minimum_version = version
    result = await attempt(secure.wss("CP2"), auth=basic("CP2", PASSWORD), context=context)
    assert result.status == 101


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the client must offer TLS 1.1
async def test_tls11_is_refused_at_the_handshake_and_logged_with_the_peer(secure):
    """TC_A_06_CSMS, A00.FR.312-314: TLS below 1.2 is terminated (and logged, A00.FR.323)."""
    context = client_context(
        secure.certs_dir, minimum=ssl.TLSVersion.TLSv1, maximum=ssl.TLSVersion.TLSv1_1
    )
    result = await attempt(secure.wss("CP2"), auth=basic("CP2", PASSWORD), context=context)
    assert result.status is None
    event = await secure.events.wait_for("tls_version_refused")
    assert event.identity == ""
    assert event.remote.startswith("127.0.0.1:")


# -- profile 3: client certificates -----------------------------------------------------------


async def test_profile3_valid_client_certificate_is_accepted(secure):
    """TC_A_07_CSMS, A00.FR.401-405: chain to the store, CN = identity."""
    cert = client_certificate(secure.tmp, secure.issuer, "cp3", "CP3")
    context = client_context(secure.certs_dir, cert)
    assert (await attempt(secure.wss("CP3"), context=context)).status == 101
    session = secure.server.gateway.registry
    assert session.get("CP3") is None  # closed after the attempt


async def test_profile3_rsa_certificate_and_expected_serial_cn_and_o(secure):
    """A00.FR.405: CN is the charge point's serial number when the record says so; O = CPO."""
    cert = client_certificate(secure.tmp, secure.issuer, "cp3sn", "SN-000123", key_kind="rsa2048")
    assert (
        await attempt(secure.wss("CP3SN"), context=client_context(secure.certs_dir, cert))
    ).status == 101
    with_o = client_certificate(secure.tmp, secure.issuer, "cp3o", "CP3O", organization="ACME CPO")
    assert (
        await attempt(secure.wss("CP3O"), context=client_context(secure.certs_dir, with_o))
    ).status == 101


async def test_profile3_without_certificate_is_refused(secure):
    result = await attempt(secure.wss("CP3"), context=client_context(secure.certs_dir))
    assert result.status == UNAUTHORIZED
    await secure.events.wait_for("profile3_missing_client_cert")


async def test_profile3_with_password_but_no_certificate_is_still_refused(secure):
    context = client_context(secure.certs_dir)
    result = await attempt(secure.wss("CP3"), auth=basic("CP3", PASSWORD), context=context)
    assert result.status == UNAUTHORIZED


async def test_profile3_over_plain_ws_is_a_downgrade(secure):
    assert (await attempt(secure.ws("CP3"))).status == UNAUTHORIZED
    await secure.events.wait_for("downgrade_attempt")


@pytest.mark.parametrize(
    ("identity", "common_name", "options", "reason"),
    [
        ("CP3", "CP1", {}, "cert_cn_mismatch"),
        ("CP3O", "CP3O", {"organization": "Other CPO"}, "cert_o_mismatch"),
        ("CP3O", "CP3O", {}, "cert_o_mismatch"),
    ],
)
async def test_profile3_certificate_of_someone_else_is_refused_by_policy(
    secure, identity, common_name, options, reason
):
    """A00.FR.404/405: the certificate must belong to this charge point and this CPO."""
    cert = client_certificate(secure.tmp, secure.issuer, "other", common_name, **options)
    result = await attempt(secure.wss(identity), context=client_context(secure.certs_dir, cert))
    assert result.status == UNAUTHORIZED
    assert (await secure.events.wait_for(reason)).identity == identity


def _foreign_issuer():
    root = create_root_ca("Foreign root", "Foreign CPO")
    return create_issuing_ca(root, "Foreign issuing", "Foreign CPO")


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("another_ca", "cert_untrusted"),
        ("expired", "cert_expired"),
        ("not_yet_valid", "cert_not_yet_valid"),
        ("rsa1024", "cert_weak_key"),
        ("no_client_auth", "cert_no_client_auth"),
    ],
)
async def test_profile3_bad_certificate_is_refused_and_logged_with_the_peer(secure, case, reason):
    """TC_A_08_CSMS, A00.FR.403/407/408: no chain, out of validity, weak key or wrong purpose."""
    now = datetime.now(UTC)
    issuer, options = secure.issuer, {}
    if case == "another_ca":
        issuer = _foreign_issuer()
    elif case == "expired":
        options = {"not_before": now - timedelta(days=30), "not_after": now - timedelta(days=1)}
    elif case == "not_yet_valid":
        options = {"not_before": now + timedelta(days=1), "not_after": now + timedelta(days=30)}
    elif case == "rsa1024":
        options = {"key_kind": "rsa1024"}
    elif case == "no_client_auth":
        options = {"extended_key_usages": (ExtendedKeyUsageOID.SERVER_AUTH,)}
    cert = client_certificate(secure.tmp, issuer, case, "CP3", **options)
    context = client_context(secure.certs_dir, cert, legacy=case == "rsa1024")
    result = await attempt(secure.wss("CP3"), context=context)
    assert result.status in (None, UNAUTHORIZED), result
    event = await secure.events.wait_for(reason)
    assert event.identity in ("", "CP3")
    assert event.remote.startswith("127.0.0.1:"), "the peer address is logged"
