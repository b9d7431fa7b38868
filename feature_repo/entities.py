"""Entities: the keys every feature hangs from."""

from feast import Entity, ValueType

card = Entity(name="card", join_keys=["card_id"], value_type=ValueType.STRING,
              description="A payment card; transactions are keyed by it.")
user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING,
              description="A customer; clicks are keyed by it, and a user may hold several cards.")
merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.STRING,
                  description="A merchant, with its MCC and country.")
