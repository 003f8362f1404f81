"""docs/executors.md: a host whose steps run on Celery workers.

celery -A samples.guide.executors_celery worker --queues squidmesh
"""

import os

from celery import Celery

from samples.quickstart import onboarding
from squidmesh_sdk import Client
from squidmesh_sdk.executors.celery import CeleryExecutor

celery_app = Celery("shop", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
# Redis gives an unacknowledged message to another worker after this many seconds: keep it
# above your longest step (a worker that dies mid-step is detected after it, too).
celery_app.conf.broker_transport_options = {"visibility_timeout": 3600}

executor = CeleryExecutor(celery_app)  # registers the task "squidmesh.perform" on celery_app
client = Client(
    os.environ.get("DATABASE_URL", "sqlite:///shop.db"),  # SQLite or PostgreSQL
    [onboarding],
    executor=executor,
)
