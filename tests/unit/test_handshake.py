"""The handshake pipeline: identity -> security policy -> version negotiation, as verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from gateway.handshake import (
    Admit,
    Allow,
    HandshakeFacts,
    HandshakePipeline,
    NoCommonVersion,
    OpenPolicy,
    Refuse,
)
from gateway.identity import IdentityRules
from gateway.versions import VERSIONS

ALL_VERSIONS = [VERSIONS["ocpp2.1"], VERSIONS["ocpp2.0.1"], VERSIONS["ocpp1.6"]]


def facts(
    path: bytes = b"/ocpp/CP-1", subprotocols: tuple[str, ...] = ("ocpp2.0.1",)
) -> HandshakeFacts:
    return HandshakeFacts(
        raw_path=path,
        subprotocols=subprotocols,
        headers=((b"host", b"csms.example.com"),),
        client="192.0.2.1:50000",
        scheme="wss",
    )


@dataclass
class RecordingPolicy:
    """A security policy answering `verdict` and remembering what it was asked."""

    verdict: Allow | Refuse
    seen: list[tuple[str, HandshakeFacts]] = field(default_factory=list)

    def check(self, identity: str, facts: HandshakeFacts) -> Allow | Refuse:
        self.seen.append((identity, facts))
        return self.verdict


def pipeline(policy: object = None, versions=ALL_VERSIONS, **kwargs) -> HandshakePipeline:
    return HandshakePipeline(IdentityRules("/ocpp"), versions, policy or OpenPolicy(), **kwargs)


@pytest.mark.parametrize(
    "path", [b"/ocpp/", b"/ocpp/CP:1", b"/ocpp/a/b", b"/ocpp/" + b"A" * 49, b"/ocpp/%FF"]
)
def test_invalid_identity_is_refused_with_400_before_the_policy(path: bytes) -> None:
    policy = RecordingPolicy(Allow())
    verdict = pipeline(policy).evaluate(facts(path))
    assert isinstance(verdict, Refuse)
    assert (verdict.status, verdict.reason, verdict.identity) == (400, "invalid_identity", None)
    assert verdict.detail == IdentityRules("/ocpp").parse(path).reason
    assert policy.seen == []


def test_no_subprotocol_header_gives_no_common_version() -> None:
    """OCPP-J 3.2: without a common version the handshake completes without a subprotocol."""
    verdict = pipeline().evaluate(facts(subprotocols=()))
    assert verdict == NoCommonVersion(
        "CP-1",
        (),
        "no common OCPP version (offered: none; supported: ocpp2.1, ocpp2.0.1, ocpp1.6)",
    )


def test_no_overlap_gives_no_common_version_listing_offered_and_supported() -> None:
    verdict = pipeline().evaluate(facts(subprotocols=("ocpp1.5", "ocpp2.0")))
    assert isinstance(verdict, NoCommonVersion)
    assert verdict.identity == "CP-1"
    assert verdict.offered == ("ocpp1.5", "ocpp2.0")
    assert "offered: ocpp1.5, ocpp2.0" in verdict.detail
    assert "supported: ocpp2.1, ocpp2.0.1, ocpp1.6" in verdict.detail


def test_supported_list_follows_the_configured_versions() -> None:
    verdict = pipeline(versions=[VERSIONS["ocpp1.6"]]).evaluate(facts(subprotocols=("ocpp2.1",)))
    assert isinstance(verdict, NoCommonVersion)
    assert verdict.detail.endswith("supported: ocpp1.6)")


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (("ocpp1.6",), "ocpp1.6"),
        (("ocpp1.6", "ocpp2.0.1"), "ocpp2.0.1"),
        (("ocpp2.0.1", "ocpp2.1"), "ocpp2.1"),
        (("ocpp1.5", "ocpp1.6"), "ocpp1.6"),
    ],
)
def test_admit_carries_the_negotiated_version_object(offered: tuple[str, ...], chosen: str) -> None:
    verdict = pipeline().evaluate(facts(subprotocols=offered))
    assert isinstance(verdict, Admit)
    assert verdict.version is VERSIONS[chosen]
    assert (verdict.identity, verdict.validation, verdict.profile) == ("CP-1", "strict", 0)


def test_admit_identity_is_percent_decoded() -> None:
    verdict = pipeline().evaluate(facts(path=b"/ocpp/CP%2D7"))
    assert isinstance(verdict, Admit)
    assert verdict.identity == "CP-7"


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_admit_uses_the_default_validation_mode(mode: str) -> None:
    verdict = pipeline(default_validation=mode).evaluate(facts())
    assert isinstance(verdict, Admit)
    assert verdict.validation == mode


@pytest.mark.parametrize("subprotocols", [("ocpp2.0.1",), ()])
def test_policy_refusal_is_returned_unchanged_and_negotiation_is_not_reached(
    subprotocols: tuple[str, ...],
) -> None:
    refusal = Refuse(
        401, "bad_credentials", "Basic auth failed", "CP-1", ((b"www-authenticate", b"Basic"),)
    )
    verdict = pipeline(RecordingPolicy(refusal)).evaluate(facts(subprotocols=subprotocols))
    assert verdict is refusal


def test_policy_is_asked_with_the_decoded_identity_and_the_facts() -> None:
    policy = RecordingPolicy(Allow())
    request = facts(path=b"/ocpp/CP%2D1")
    pipeline(policy).evaluate(request)
    assert policy.seen == [("CP-1", request)]


def test_policy_narrows_allowed_versions() -> None:
    policy = RecordingPolicy(Allow(profile=2, allowed_versions=frozenset({"ocpp1.6"})))
    verdict = pipeline(policy).evaluate(facts(subprotocols=("ocpp2.1", "ocpp1.6")))
    assert isinstance(verdict, Admit)
    assert verdict.version is VERSIONS["ocpp1.6"]
    assert verdict.profile == 2


def test_narrowed_versions_without_overlap_give_no_common_version_listing_the_allowed() -> None:
    policy = RecordingPolicy(Allow(allowed_versions=frozenset({"ocpp1.6"})))
    verdict = pipeline(policy).evaluate(facts(subprotocols=("ocpp2.0.1",)))
    assert isinstance(verdict, NoCommonVersion)
    assert verdict.detail == ("no common OCPP version (offered: ocpp2.0.1; supported: ocpp1.6)")


@pytest.mark.parametrize(
    ("default", "policy_mode", "expected"),
    [
        ("strict", "lenient", "lenient"),
        ("lenient", "strict", "strict"),
        ("lenient", None, "lenient"),
    ],
)
def test_policy_validation_mode_overrides_the_default(
    default: str, policy_mode: str | None, expected: str
) -> None:
    policy = RecordingPolicy(Allow(validation=policy_mode))
    verdict = pipeline(policy, default_validation=default).evaluate(facts())
    assert isinstance(verdict, Admit)
    assert verdict.validation == expected


def test_open_policy_allows_with_profile_0() -> None:
    assert OpenPolicy().check("CP-1", facts()) == Allow(profile=0)
