"""Apply the Kafka access policy (core/kafka.py) to a SASL broker, as the admin: each service
user's SCRAM credential from its password file, and exactly the ACLs the policy names (ACLs
of those users that the policy no longer names are deleted). Idempotent; ``stack init`` and
``make up`` run it whenever SASL is on."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from core import kafka
from core.settings import StackSettings
from stack.errors import StackError

_RESOURCE = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP}


def binding(user: str, grant: kafka.Grant) -> AclBinding:
    return AclBinding(_RESOURCE[grant.resource], grant.name,
                      ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL,
                      f"User:{user}", "*", AclOperation[grant.operation], AclPermissionType.ALLOW)


def _key(b: AclBinding) -> tuple[object, ...]:
    return (b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type)


def apply(settings: StackSettings, timeout_s: float = 30) -> dict[str, int]:
    """Returns counts: users upserted, ACLs created, ACLs deleted."""
    if not settings.kafka_sasl:
        raise StackError("the Kafka access policy needs STACK_KAFKA_SASL=true")
    admin_settings = settings.model_copy(update={"kafka_user": kafka.ADMIN, "kafka_password": None})
    admin = AdminClient(kafka.client_config(admin_settings))
    wanted = kafka.policy()
    try:
        scram = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
        upserts: list[UserScramCredentialAlteration] = [
            UserScramCredentialUpsertion(user, scram, kafka.password(settings, user).encode()) for user in wanted]
        for fut in admin.alter_user_scram_credentials(upserts, request_timeout=timeout_s).values():
            fut.result()
        desired = {_key(binding(u, g)): binding(u, g) for u, grants in wanted.items() for g in grants}
        existing: dict[tuple[object, ...], AclBinding] = {}
        for user in wanted:
            any_name: Any = None  # a filter's None matches any name or host
            flt = AclBindingFilter(ResourceType.ANY, any_name, ResourcePatternType.ANY, f"User:{user}", any_name,
                                   AclOperation.ANY, AclPermissionType.ANY)
            for b in admin.describe_acls(flt, request_timeout=timeout_s).result():
                existing[_key(b)] = b
        create = [b for k, b in desired.items() if k not in existing]
        delete = [AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host,
                                   b.operation, b.permission_type) for k, b in existing.items() if k not in desired]
        if create:
            for fut in admin.create_acls(create, request_timeout=timeout_s).values():
                fut.result()
        if delete:
            for fut in admin.delete_acls(delete, request_timeout=timeout_s).values():
                fut.result()
    except KafkaException as exc:
        raise StackError(f"applying the Kafka access policy failed: {exc}") from exc
    return {"users": len(upserts), "acls created": len(create), "acls deleted": len(delete)}
