"""The ``unleash`` flag source: the service follows a feature in an Unleash server through the
Unleash SDK (``UnleashClient``), behind an OpenFeature provider of our own.

Why not ``openfeature-provider-unleash`` (0.1.x): it cannot set the refresh interval (the SDK's
default is 15 s, a kill switch needs about 1 s), and it cannot tell when the SDK last reached the
server, which the lease below needs. The SDK still does the deciding: its engine evaluates the
feature's strategies with the customer id as ``userId``, so Unleash decides who is in.

What the SDK does not do, this does:

- **a lease (fail closed)**: the SDK keeps serving its last flags when the server is away. Every
  answer from the features endpoint (200 or 304) renews the service's flag lease; past it the
  service sends nothing and its health says so, the rule the PostgreSQL fleet follows.
- **what was applied**: the feature's ``enabled`` and its ``flexibleRollout`` percentage are laid
  over the live settings on every change, so health and metrics report them (and the engine can
  confirm a flag change against them), with the time of the last refresh.
- **a cache of its own**: the SDK's default cache is a file named after the app, shared by every
  process of that name on the host, ETag included. Replicas sharing it send each other's ETag, get
  304 and keep flags they never fetched: one stayed on for over 8 s after a flag-off until the next
  change. Each service keeps its SDK state in memory (:class:`MemoryCache`).
- **a bounded poll**: the SDK fetches with ``requests``, whose timeout limits each read, not the
  answer, and reads the answer whole: an Unleash that trickled kept a poll going for minutes, and a
  2 MB gzip answer took the service to 4.8 GB. The SDK's one fetch call
  (``fetch_features`` on its transport) is replaced by :meth:`UnleashSource._fetch`, which reads
  through :mod:`rollout.util.bounded`: one deadline for the whole poll (the SDK's request timeout),
  at most :data:`MAX_FEATURES_BYTES` on the wire and decoded, redirects never followed. The SDK
  still schedules the polls, keeps the ETag and evaluates the features. Registration with the
  server (a name in Unleash's UI, an unbounded call at start) is off, as metrics are.
- **a re-read on a hint** (:meth:`UnleashSource.refresh_now`): polling puts a flag-off 0.7-1.5 s
  away (the open-source server moves its features' revision once a second and has no push to
  backend SDKs). A hint (Unleash's webhook, the engine after its flag-off) makes the service read
  the feature at once from ``/api/client/features/NAME``, which the server answers from its
  database, uncached. The hint carries no value; only a read that finds the feature off is applied
  (the kill direction), and for a few seconds after it an SDK answer that would turn the flag back
  on is checked against a fresh read first (the server's cached answer can lag it by a second).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote

import httpx
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import FeatureProvider
from UnleashClient.cache import BaseCache

from rollout.booking.flags.base import BooleanProvider
from rollout.util import bounded
from rollout.util.errors import ConfigError

if TYPE_CHECKING:
    from UnleashClient import UnleashClient

    from rollout.booking.service.settings import LiveSettings

log = logging.getLogger("rollout.service")

#: the strategy rollout writes carries this title; it is the one whose percentage is reported
STRATEGY_TITLE = "rollout"
#: the largest features answer a poll reads (on the wire and decoded): thousands of features
MAX_FEATURES_BYTES = 8 << 20


class Fetched(NamedTuple):
    """What the SDK's polling connector takes from one fetch (its ``FetchResult``'s fields)."""

    raw_state: str | None
    etag: str
    not_modified: bool = False


#: hints coalesce: at most one re-read in flight and one waiting, and this long between two re-reads
HINT_GAP_S = 0.05
#: how long after a re-read found the feature off an SDK answer saying on is checked afresh: the
#: server's cached answer moves with its revision, refreshed once a second
HINT_TRUST_S = 3.0


def applied_of(features: list[dict[str, Any]], name: str) -> tuple[bool, int | None]:
    """(enabled, percent) of feature ``name`` in a client-features answer. Not there: off. On with
    no strategy: everyone (100). The percentage is rollout's own strategy's, else the first
    ``flexibleRollout``'s; ``default`` is 100."""
    feature = next((f for f in features if f.get("name") == name), None)
    if feature is None:
        return False, None
    strategies = [s for s in feature.get("strategies") or [] if not s.get("disabled")]
    enabled = bool(feature.get("enabled"))
    if not strategies:
        return enabled, 100
    ours = [s for s in strategies if s.get("title") == STRATEGY_TITLE] or [
        s for s in strategies if s.get("name") == "flexibleRollout"
    ]
    if ours:
        try:
            return enabled, int(str((ours[0].get("parameters") or {}).get("rollout", "")))
        except ValueError:
            return enabled, None
    return enabled, 100 if any(s.get("name") == "default" for s in strategies) else None


class MemoryCache(BaseCache):
    """The SDK's cache (features and ETag), in this process only (see the module docstring)."""

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}

    def set(self, key: str, value: Any) -> None:
        self._data[key] = value

    def mset(self, data: dict) -> None:
        self._data.update(data)

    def get(self, key: str, default: Any | None = None) -> Any:
        return self._data.get(key, default)

    def exists(self, key: str) -> bool:
        return key in self._data

    def destroy(self) -> None:
        self._data.clear()


class UnleashProvider(BooleanProvider):
    """OpenFeature's view of the SDK: the customer id is Unleash's ``userId``; nothing is in while
    the lease has run out."""

    name = "unleash"

    def __init__(self, source: UnleashSource, live: LiveSettings) -> None:
        super().__init__()
        self._source, self._live = source, live

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[bool]:
        client = self._source.client
        if client is None or self._live.lease_expired or not self._source.reached:
            return FlagResolutionDetails(value=False, reason=Reason.STALE)
        context = {"userId": evaluation_context.targeting_key} if evaluation_context else {}
        inside = client.is_enabled(flag_key, context)
        return FlagResolutionDetails(value=inside, reason=Reason.TARGETING_MATCH if inside else Reason.DEFAULT)


class UnleashSource:
    """Follows feature ``feature`` of the Unleash server at ``url`` with a client token."""

    name = "unleash"

    def __init__(
        self,
        url: str,
        token: str,
        feature: str,
        refresh: float = 1.0,
        lease: float | None = None,
        replica_id: str | None = None,
        app_name: str = "rollout-booking-service",
        flag_variable: str = "WHATSAPP_NOTIFICATIONS_ENABLED",
        percent_variable: str = "WHATSAPP_ROLLOUT_PERCENT",
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--unleash-url: must be an http(s) URL, got {url!r}")
        if not token:
            raise ConfigError("UNLEASH_API_TOKEN: not set (the Unleash client token the service reads its flag with)")
        if refresh <= 0:
            raise ConfigError(f"--flag-refresh: must be above 0 s, got {refresh:g}")
        self.url = url.rstrip("/") if url.rstrip("/").endswith("/api") else url.rstrip("/") + "/api"
        self._token, self.flag_key, self.refresh = token, feature, refresh
        self.lease = refresh + 3.0 if lease is None else lease
        if self.lease <= refresh:
            raise ConfigError(f"--flag-lease: must be longer than the refresh ({refresh:g} s), got {self.lease:g}")
        self.replica_id, self.app_name = replica_id, app_name
        self.variables = (flag_variable, percent_variable)
        self.client: UnleashClient | None = None
        #: has the server answered at least once since start?
        self.reached = False
        self._refreshed_at: float | None = None
        self._applied: tuple[bool, int | None] | None = None
        self._lock = threading.Lock()
        self._live: LiveSettings | None = None
        self._lost_logged = False
        #: one poll's deadline, whatever the server does (the SDK's request timeout)
        self.timeout = max(1.0, float(int(refresh)))
        #: the polls' and the re-reads' client, made once (its TLS context costs tens of ms: never on a
        #: hint's path)
        self._http: httpx.Client | None = None
        self._hinted, self._stopping = threading.Event(), threading.Event()
        self._hint_thread: threading.Thread | None = None
        #: monotonic time a re-read on a hint last found the feature off
        self._off_read_at: float | None = None
        #: re-reads done on hints so far
        self.rereads = 0

    def provider(self, live: LiveSettings) -> FeatureProvider:
        return UnleashProvider(self, live)

    def refreshed_at(self) -> float | None:
        return self._refreshed_at

    def start(self, live: LiveSettings) -> None:
        """Closed until the server first answers; then the SDK polls every ``refresh`` seconds."""
        from UnleashClient import UnleashClient

        # the SDK logs every failed poll with a traceback; the service says it once, in one line
        logging.getLogger("UnleashClient").setLevel(logging.CRITICAL)
        self._live = live
        flag, _ = self.variables
        live.set_overlay({flag: "false"})
        live.renew_lease(0.0)  # no flag read yet: closed, and health says so
        self.client = UnleashClient(
            url=self.url,
            app_name=self.app_name,
            instance_id=self.replica_id or self.app_name,
            custom_headers={"Authorization": self._token},
            refresh_interval=self.refresh,  # type: ignore[arg-type]  # the SDK takes a float as well
            request_timeout=int(self.timeout),
            request_retries=0,
            disable_metrics=True,
            disable_registration=True,
            cache=MemoryCache(),
        )
        transport = getattr(self.client, "_transport", None)
        if not hasattr(transport, "fetch_features"):  # pragma: no cover - an SDK this module was not written for
            raise ConfigError("this UnleashClient has no fetch_features to bound; install UnleashClient 6.x")
        self._http = bounded.client(self.url, {"Authorization": self._token})
        transport.fetch_features = self._fetch  # type: ignore[union-attr]
        self.client.initialize_client()
        self._hint_thread = threading.Thread(target=self._follow_hints, name="unleash-hints", daemon=True)
        self._hint_thread.start()

    def _fetch(self, etag: str = "") -> Fetched:
        """One poll of the features, bounded (see the module docstring); the SDK's polling
        connector calls it on its schedule. Never raises: a failed poll lets the lease run out."""
        assert self._http is not None
        headers = {
            "UNLEASH-APPNAME": self.app_name,
            "UNLEASH-INSTANCEID": self.replica_id or self.app_name,
            **({"If-None-Match": etag} if etag else {}),
        }
        try:
            response = bounded.exchange(
                self._http,
                "GET",
                "/client/features",
                bounded.Deadline(self.timeout),
                MAX_FEATURES_BYTES,
                headers=headers,
            )
        except (bounded.AnswerRefused, httpx.HTTPError) as exc:
            self._lost(
                str(exc) if isinstance(exc, bounded.AnswerRefused) else f"cannot be reached ({type(exc).__name__})"
            )
            return Fetched(None, "")
        if not self._answered(response):
            return Fetched(None, "")
        fresh = response.headers.get("etag", "")
        if response.status_code == 304:
            return Fetched(None, fresh, not_modified=True)
        return Fetched(response.text, fresh)

    def _lost(self, why: str) -> None:
        if not self._lost_logged:
            log.error("Unleash flag poll failed (%s); the lease runs out", why)
            self._lost_logged = True

    def _answered(self, response: httpx.Response) -> bool:
        """Take a poll's answer in: the applied flag over the settings, the lease renewed. False when
        the answer is not one to keep."""
        if self._live is None:
            return False
        if response.status_code not in (200, 304):
            status = response.status_code
            where = (
                f", a redirect to {response.headers.get('location', 'nowhere')[:200]}" if 300 <= status < 400 else ""
            )
            self._lost(f"HTTP {status}{where}")
            return False
        if response.status_code == 200:
            try:
                data = response.json()
                applied = applied_of(data.get("features") or [], self.flag_key)
            except (ValueError, AttributeError, TypeError):
                self._lost("its features answer is not the JSON expected")
                return False
            self._lay_over(applied)
        if self._lost_logged or not self.reached:
            log.info("Unleash reached: following feature %s", self.flag_key)
        self._lost_logged, self.reached = False, True
        self._refreshed_at = time.time()
        self._live.renew_lease(self.lease)
        return True

    def _lay_over(self, applied: tuple[bool, int | None], reread: bool = False) -> None:
        """Lay (enabled, percent) over the live settings, if it changed: an SDK answer, or a re-read on a
        hint (``reread``). One at a time, so an SDK answer that lags a re-read is seen to."""
        assert self._live is not None
        with self._lock:
            if reread:
                self._off_read_at = time.monotonic()
            elif applied[0] and self._off_read_recently():  # the cached answer may lag the re-read
                applied = self._checked_afresh(applied)
            if applied != self._applied:
                flag, percent = self.variables
                values = {flag: "true" if applied[0] else "false"}
                if applied[1] is not None:
                    values[percent] = str(applied[1])
                self._live.set_overlay(values, source=f"Unleash feature {self.flag_key}")
                self._applied = applied

    # --- a hint that the feature changed: re-read it now (see the module docstring) ------------------

    def refresh_now(self) -> str:
        """Re-read the feature now, outside the poll: ``started``, or ``queued`` when a re-read is
        already due (hints coalesce). Never blocks; the re-read runs in a thread of its own."""
        queued = self._hinted.is_set()
        self._hinted.set()
        return "queued" if queued else "started"

    def _follow_hints(self) -> None:
        while not self._stopping.is_set():
            self._hinted.wait()
            if self._stopping.is_set():
                return
            self._hinted.clear()
            applied = self._read_feature()
            if applied is not None and not applied[0]:  # only the kill direction: an on waits for the SDK
                self._lay_over(applied, reread=True)
            self.rereads += 1
            self._stopping.wait(HINT_GAP_S)

    def _read_feature(self) -> tuple[bool, int | None] | None:
        """(enabled, percent) from the server's uncached one-feature answer; None when it cannot say."""
        assert self._http is not None
        try:
            response = bounded.exchange(
                self._http,
                "GET",
                f"/client/features/{quote(self.flag_key, safe='')}",
                bounded.Deadline(self.timeout),
                MAX_FEATURES_BYTES,
            )
            if response.status_code == 404:
                return False, None  # no such feature: off, as a features answer without it
            return applied_of([response.json()], self.flag_key) if response.status_code == 200 else None
        except (bounded.AnswerRefused, httpx.HTTPError, ValueError, AttributeError, TypeError):
            return None

    def _off_read_recently(self) -> bool:
        return self._off_read_at is not None and time.monotonic() - self._off_read_at < HINT_TRUST_S

    def _checked_afresh(self, applied: tuple[bool, int | None]) -> tuple[bool, int | None]:
        """An SDK answer saying on, soon after a re-read found the feature off: the uncached answer
        decides (it cannot be older); if it cannot be had, the SDK's answer stands, as before hints."""
        fresh = self._read_feature()
        return fresh if fresh is not None and not fresh[0] else applied

    def stop(self) -> None:
        self._stopping.set()
        self._hinted.set()
        if self._hint_thread is not None:
            self._hint_thread.join(5)
        if self.client is not None:
            self.client.destroy()
        if self._http is not None:
            self._http.close()
