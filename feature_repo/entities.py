"""Entities: the keys every feature hangs from."""

from feast import Entity, ValueType

card = Entity(name="card", join_keys=["card_id"], value_type=ValueType.STRING,
              description="A payment card; transactions are keyed by it.")
