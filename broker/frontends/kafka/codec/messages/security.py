"""Authentication and authorization: SaslHandshake, SaslAuthenticate, the ACL APIs, the SCRAM credential APIs.

Declarations transcribed from Kafka's published message specs (the ``*Request.json`` /
``*Response.json`` schemas), limited to the versions Strata declares. See
``docs/kafka-codec.md`` for how to read and extend them.
"""

from __future__ import annotations

from strata.broker.frontends.kafka.codec.api_keys import ApiKey
from strata.broker.frontends.kafka.codec.schema import (
    RequestMessage,
    ResponseMessage,
    Struct,
    f,
    message,
)
from strata.broker.frontends.kafka.codec.types import (
    BYTES,
    INT8,
    INT16,
    INT32,
    INT64,
    STRING,
    Array,
)


@message(ApiKey.SASL_HANDSHAKE, "0-1", flexible="none")
class SaslHandshakeRequest(RequestMessage):
    """SaslHandshake request: pick a SASL mechanism."""

    mechanism: str = f(STRING, "0+")


@message(ApiKey.SASL_HANDSHAKE, "0-1", flexible="none")
class SaslHandshakeResponse(ResponseMessage):
    """SaslHandshake response: the broker's enabled mechanisms."""

    error_code: int = f(INT16, "0+")
    mechanisms: list[str] = f(Array(STRING), "0+")


@message(ApiKey.SASL_AUTHENTICATE, "0-2", flexible="2+")
class SaslAuthenticateRequest(RequestMessage):
    """SaslAuthenticate request: one step of a SASL exchange (after handshake v1)."""

    auth_bytes: bytes = f(BYTES, "0+")


@message(ApiKey.SASL_AUTHENTICATE, "0-2", flexible="2+")
class SaslAuthenticateResponse(ResponseMessage):
    """SaslAuthenticate response: the server's bytes and the outcome."""

    error_code: int = f(INT16, "0+")
    error_message: str | None = f(STRING, "0+", nullable="0+")
    auth_bytes: bytes = f(BYTES, "0+")
    session_lifetime_ms: int = f(INT64, "1+")


@message(ApiKey.DESCRIBE_ACLS, "0-3", flexible="2+")
class DescribeAclsRequest(RequestMessage):
    """DescribeAcls request: the ACLs matching a filter."""

    resource_type_filter: int = f(INT8, "0+")
    resource_name_filter: str | None = f(STRING, "0+", nullable="0+")
    pattern_type_filter: int = f(INT8, "1+", default=3)
    principal_filter: str | None = f(STRING, "0+", nullable="0+")
    host_filter: str | None = f(STRING, "0+", nullable="0+")
    operation: int = f(INT8, "0+")
    permission_type: int = f(INT8, "0+")


@message(ApiKey.DESCRIBE_ACLS, "0-3", flexible="2+")
class DescribeAclsResponse(ResponseMessage):
    """DescribeAcls response: matching ACLs, grouped by resource."""

    throttle_time_ms: int = f(INT32, "0+")
    error_code: int = f(INT16, "0+")
    error_message: str | None = f(STRING, "0+", nullable="0+")
    resources: list[DescribeAclsResponse.DescribeAclsResource] = f(
        Array("DescribeAclsResource"), "0+"
    )

    class DescribeAclsResource(Struct):
        resource_type: int = f(INT8, "0+")
        resource_name: str = f(STRING, "0+")
        pattern_type: int = f(INT8, "1+", default=3)
        acls: list[DescribeAclsResponse.AclDescription] = f(Array("AclDescription"), "0+")

    class AclDescription(Struct):
        principal: str = f(STRING, "0+")
        host: str = f(STRING, "0+")
        operation: int = f(INT8, "0+")
        permission_type: int = f(INT8, "0+")


@message(ApiKey.CREATE_ACLS, "0-3", flexible="2+")
class CreateAclsRequest(RequestMessage):
    """CreateAcls request: add ACLs."""

    creations: list[CreateAclsRequest.AclCreation] = f(Array("AclCreation"), "0+")

    class AclCreation(Struct):
        resource_type: int = f(INT8, "0+")
        resource_name: str = f(STRING, "0+")
        resource_pattern_type: int = f(INT8, "1+", default=3)
        principal: str = f(STRING, "0+")
        host: str = f(STRING, "0+")
        operation: int = f(INT8, "0+")
        permission_type: int = f(INT8, "0+")


@message(ApiKey.CREATE_ACLS, "0-3", flexible="2+")
class CreateAclsResponse(ResponseMessage):
    """CreateAcls response: the outcome per ACL."""

    throttle_time_ms: int = f(INT32, "0+")
    results: list[CreateAclsResponse.AclCreationResult] = f(Array("AclCreationResult"), "0+")

    class AclCreationResult(Struct):
        error_code: int = f(INT16, "0+")
        error_message: str | None = f(STRING, "0+", nullable="0+")


@message(ApiKey.DELETE_ACLS, "0-3", flexible="2+")
class DeleteAclsRequest(RequestMessage):
    """DeleteAcls request: remove the ACLs matching filters."""

    filters: list[DeleteAclsRequest.DeleteAclsFilter] = f(Array("DeleteAclsFilter"), "0+")

    class DeleteAclsFilter(Struct):
        resource_type_filter: int = f(INT8, "0+")
        resource_name_filter: str | None = f(STRING, "0+", nullable="0+")
        pattern_type_filter: int = f(INT8, "1+", default=3)
        principal_filter: str | None = f(STRING, "0+", nullable="0+")
        host_filter: str | None = f(STRING, "0+", nullable="0+")
        operation: int = f(INT8, "0+")
        permission_type: int = f(INT8, "0+")


@message(ApiKey.DELETE_ACLS, "0-3", flexible="2+")
class DeleteAclsResponse(ResponseMessage):
    """DeleteAcls response: the ACLs removed per filter."""

    throttle_time_ms: int = f(INT32, "0+")
    filter_results: list[DeleteAclsResponse.DeleteAclsFilterResult] = f(
        Array("DeleteAclsFilterResult"), "0+"
    )

    class DeleteAclsFilterResult(Struct):
        error_code: int = f(INT16, "0+")
        error_message: str | None = f(STRING, "0+", nullable="0+")
        matching_acls: list[DeleteAclsResponse.DeleteAclsMatchingAcl] = f(
            Array("DeleteAclsMatchingAcl"), "0+"
        )

    class DeleteAclsMatchingAcl(Struct):
        error_code: int = f(INT16, "0+")
        error_message: str | None = f(STRING, "0+", nullable="0+")
        resource_type: int = f(INT8, "0+")
        resource_name: str = f(STRING, "0+")
        pattern_type: int = f(INT8, "1+", default=3)
        principal: str = f(STRING, "0+")
        host: str = f(STRING, "0+")
        operation: int = f(INT8, "0+")
        permission_type: int = f(INT8, "0+")


@message(ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, "0", flexible="0+")
class DescribeUserScramCredentialsRequest(RequestMessage):
    """DescribeUserScramCredentials request: which SCRAM mechanisms and iteration counts users have."""

    users: list[DescribeUserScramCredentialsRequest.UserName] | None = f(
        Array("UserName"), "0+", nullable="0+"
    )

    class UserName(Struct):
        name: str = f(STRING, "0+")


@message(ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, "0", flexible="0+")
class DescribeUserScramCredentialsResponse(ResponseMessage):
    """DescribeUserScramCredentials response: mechanism and iterations per user (never a secret)."""

    throttle_time_ms: int = f(INT32, "0+")
    error_code: int = f(INT16, "0+")
    error_message: str | None = f(STRING, "0+", nullable="0+")
    results: list[DescribeUserScramCredentialsResponse.DescribeUserScramCredentialsResult] = f(
        Array("DescribeUserScramCredentialsResult"), "0+"
    )

    class DescribeUserScramCredentialsResult(Struct):
        user: str = f(STRING, "0+")
        error_code: int = f(INT16, "0+")
        error_message: str | None = f(STRING, "0+", nullable="0+")
        credential_infos: list[DescribeUserScramCredentialsResponse.CredentialInfo] = f(
            Array("CredentialInfo"), "0+"
        )

    class CredentialInfo(Struct):
        mechanism: int = f(INT8, "0+")
        iterations: int = f(INT32, "0+")


@message(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, "0", flexible="0+")
class AlterUserScramCredentialsRequest(RequestMessage):
    """AlterUserScramCredentials request: upsert (salt, salted password, iterations) or delete SCRAM
    credentials.
    """

    deletions: list[AlterUserScramCredentialsRequest.ScramCredentialDeletion] = f(
        Array("ScramCredentialDeletion"), "0+"
    )
    upsertions: list[AlterUserScramCredentialsRequest.ScramCredentialUpsertion] = f(
        Array("ScramCredentialUpsertion"), "0+"
    )

    class ScramCredentialDeletion(Struct):
        name: str = f(STRING, "0+")
        mechanism: int = f(INT8, "0+")

    class ScramCredentialUpsertion(Struct):
        name: str = f(STRING, "0+")
        mechanism: int = f(INT8, "0+")
        iterations: int = f(INT32, "0+")
        salt: bytes = f(BYTES, "0+")
        salted_password: bytes = f(BYTES, "0+")


@message(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, "0", flexible="0+")
class AlterUserScramCredentialsResponse(ResponseMessage):
    """AlterUserScramCredentials response: the outcome per user."""

    throttle_time_ms: int = f(INT32, "0+")
    results: list[AlterUserScramCredentialsResponse.AlterUserScramCredentialsResult] = f(
        Array("AlterUserScramCredentialsResult"), "0+"
    )

    class AlterUserScramCredentialsResult(Struct):
        user: str = f(STRING, "0+")
        error_code: int = f(INT16, "0+")
        error_message: str | None = f(STRING, "0+", nullable="0+")
