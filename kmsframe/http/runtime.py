"""What the routes of one worker share: its deployment, apps and metrics.

A :class:`Runtime` is created empty with the app; the lifespan opens the
deployment inside the worker process (``open``) and closes it on shutdown,
so every worker has its own HSM session, store connections and key cache.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import attrs
from anyio import CapacityLimiter

from ..apps import AppRegistry
from ..deployment import Deployment
from ..node_sync import StorePoller, StoreSyncedSignal
from ..secrets import Secret
from ..scheduler import Scheduler
from ..service import KeyService
from .body import DEFAULT_MAX_BODY
from .metrics import Metrics, MetricsExchange


@attrs.frozen(slots=True)
class HttpSettings:
    max_body_bytes: int = DEFAULT_MAX_BODY
    root_token: Secret | None = attrs.field(default=None, repr=False)
    # Serve the crypto routes through kmsframe.http.fastpath (same behaviour,
    # fewer layers); off only to compare, or to test the full stack.
    fast_path: bool = True
    # Threads per worker for crypto operations their algorithm declares slow
    # (public-key signatures and decryption); None: one per core (`serve`
    # divides the cores among its workers). 0 runs them
    # on the event loop (the behaviour before; kept to measure against).
    crypto_threads: int | None = None


class Runtime:
    def __init__(self, factory: Callable[[], Deployment], settings: HttpSettings) -> None:
        self.factory = factory
        self.settings = settings
        self.metrics = Metrics()
        self._deployment: Deployment | None = None
        self._apps: AppRegistry | None = None
        self._service: KeyService | None = None
        self.exchange: MetricsExchange | None = None
        self.scheduler: Scheduler | None = None
        self.poller: StorePoller | None = None
        threads = settings.crypto_threads
        if threads is None:
            threads = os.cpu_count() or 1
        # Bounded, and apart from the default pool (cold keys, blocking
        # routes): a burst of RSA signatures queues here instead of starting
        # dozens of threads that would take the CPU from the event loop.
        self.crypto_limiter = CapacityLimiter(threads) if threads > 0 else None

    def open(self) -> None:
        deployment = self.factory()
        self._deployment = deployment
        self._service = deployment.service
        self.audit = deployment.access.audit  # the crypto routes record into it per call
        self._apps = AppRegistry(deployment.storage, deployment.service.signal,
                                 root_token=self.settings.root_token)
        cache = deployment.service.cache
        self.metrics.cache_stats = lambda: (cache.hits, cache.misses)
        self.exchange = MetricsExchange(deployment.config.data_dir / "metrics", self.metrics)
        self.exchange.publish()
        # One worker per host runs the scheduler (a flock in the data dir; the
        # others take over if it dies); across hosts its steps are
        # compare-and-swap updates that re-check what is due, so they act once.
        self.scheduler = Scheduler(deployment.service,
                                   deployment.service.settings.scheduler_interval_seconds,
                                   write_ahead=deployment.access.write_ahead,
                                   lock_path=deployment.config.data_dir / "scheduler.lock")
        self.scheduler.start()
        interval = deployment.service.settings.store_poll_seconds
        signal = deployment.service.signal
        if interval > 0 and isinstance(signal, StoreSyncedSignal):
            self.poller = StorePoller(signal, interval)
            self.poller.start()

    def close(self) -> None:
        if self.poller is not None:
            self.poller.stop()
            self.poller = None
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        if self.exchange is not None:
            self.exchange.remove()
            self.exchange = None
        if self._deployment is not None:
            self._deployment.close()
            self._deployment = None

    @property
    def deployment(self) -> Deployment:
        assert self._deployment is not None, "the deployment is opened by the lifespan"
        return self._deployment

    @property
    def service(self) -> KeyService:
        assert self._service is not None, "the deployment is opened by the lifespan"
        return self._service

    @property
    def apps(self) -> AppRegistry:
        assert self._apps is not None, "the deployment is opened by the lifespan"
        return self._apps
