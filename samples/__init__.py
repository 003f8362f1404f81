"""Runnable samples: the eight reference workflows of Squid Mesh, declared with squidmesh_sdk."""

SAMPLES: tuple[str, ...] = (
    "payment_recovery",
    "dependency_recovery",
    "manual_approval",
    "daily_digest",
    "local_ledger_checkout",
    "saga_checkout",
    "retry_verification",
    "cancellable_wait",
    "order_pipeline",
)
