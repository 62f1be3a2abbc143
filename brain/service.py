"""A brain process: pulls "session needs attention" from the work queue and wakes sessions.

- Work: one durable pull consumer (`brains`) on the `KEEL_WORK` stream is shared by every
  brain, so each message goes to one of them. A message is acked only after the session it
  names was driven and released; a brain that dies leaves it unacked, and JetStream delivers
  it again.
- Sweeper: every brain periodically asks the store for non-terminal sessions whose lease
  expired (their brain died or froze) or whose timer is due (an approval expiring), and puts
  them on the work queue. Nothing stays "running" with no owner.
- Outcomes: a tool outcome for a session no brain holds (its calls outlasted the brain's
  hold) puts the session on the work queue; a second durable consumer (`brain-outcomes`) on
  `KEEL_OUTCOMES`, shared by every brain, sees each outcome once.
- Audits: any brain answers `keel.audit` requests (queue group `brains`) with a session's
  state folded to a seq (`brain.audit`); the gateway's audit route asks.
- Restart in place: a brain started with the id of one that died takes that one's sessions
  back at once (the store lets an owner reclaim its own lease), without waiting for expiry.
- Stopping: `close()` (SIGTERM) ends the leases of the sessions the brain still holds and
  queues them, so another brain takes each at once, whatever the lease period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Final

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from brain._peers import Peers
from brain.audit import answer_audit
from brain.crashpoints import brain_crashpoints
from brain.deps import BrainDeps
from brain.hands_client import HandsClient
from brain.metrics import BrainMetrics
from brain.providers import Providers
from brain.sandboxes import answer_sandbox_check
from brain.settings import BrainSettings
from brain.wake import WakeResult, wake
from schemas import (
    AUDIT_QUEUE,
    AUDIT_SUBJECT,
    OUTCOME_STREAM,
    OUTCOME_SUBJECTS,
    SANDBOX_CHECK_QUEUE,
    SANDBOX_CHECK_SUBJECT,
    SINGLE,
    TERMINAL_STATUSES,
    WORK_CONSUMER,
    WORK_STREAM,
    WORK_SUBJECTS,
    Attention,
    BackgroundTasks,
    MetricsServer,
    NatsLinkLog,
    Replication,
    connect_nats,
    ensure_stream,
    work_subject,
)
from session_store import (
    BrainStore,
    SessionNotFound,
    StoreError,
    StoreUnavailable,
    open_store,
)

if TYPE_CHECKING:
    from traces.live import LiveTracer

log = logging.getLogger("keel.brain")

_ENCODER: Final = msgspec.json.Encoder()
_ATTENTION: Final = msgspec.json.Decoder(Attention)

# How long a work message may go unacknowledged before JetStream gives it to another brain;
# a brain driving a session longer than this says "still working" every third of it.
ACK_WAIT_S: Final = 30.0
OUTCOME_CONSUMER: Final = "brain-outcomes"
# JetStream drops a repeated Nats-Msg-Id within this window (sweeps of several brains).
DUPLICATE_WINDOW_S: Final = 5.0


async def ensure_work_stream(js: JetStreamContext, replication: Replication = SINGLE) -> None:
    await ensure_stream(
        js,
        StreamConfig(
            name=WORK_STREAM,
            subjects=[WORK_SUBJECTS],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
            num_replicas=replication.replicas,
            placement=replication.placement,
        ),
    )


async def request_attention(
    js: JetStreamContext, session_id: str, reason: str, msg_id: str | None = None
) -> bool:
    """Put `session_id` on the work queue (durably: JetStream has it when this returns).
    False when JetStream dropped it as a repeat of `msg_id`."""
    headers = {"Nats-Msg-Id": msg_id} if msg_id else None
    body = _ENCODER.encode(Attention(session_id=session_id, reason=reason))
    ack = await js.publish(work_subject(session_id), body, headers=headers)
    return not ack.duplicate


class Brain:
    def __init__(
        self,
        settings: BrainSettings,
        *,
        store: BrainStore | None = None,
        providers: Providers | None = None,
    ) -> None:
        self.settings: Final = settings
        self.metrics: Final = BrainMetrics()
        # A store given to the brain records its metrics wherever its opener said.
        self.store: Final = store or open_store(settings.store_url, registry=self.metrics.registry)
        self._owns_store: Final = store is None
        self.providers: Final = providers or Providers()
        self.active: set[str] = set()
        self.metrics.sessions_held.set_function(lambda: len(self.active))
        self.metrics_server: MetricsServer | None = None
        self._handling = 0
        self._slot_freed = asyncio.Event()
        self._tasks: Final = BackgroundTasks(log, "a brain task")
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._deps: BrainDeps | None = None
        self._tracer: LiveTracer | None = None

    async def start(self) -> None:
        if self._owns_store:
            await self.store.migrate()
        if self.settings.metrics_addr:
            self.metrics_server = MetricsServer.start(
                self.settings.metrics_addr, self.metrics.registry
            )
        link = NatsLinkLog(log, f"brain {self.settings.brain_id}")
        self._nc = await connect_nats(self.settings.nats_url, self.settings.brain_id, link)
        self._js = self._nc.jetstream()
        await ensure_work_stream(self._js, self.settings.jetstream.resolve(self._nc))
        if self.settings.traces.exporting:
            # Only now: a brain that does not trace never loads the OpenTelemetry SDK.
            from traces.live import LiveTracer

            self._tracer = LiveTracer.otlp(self.store, self.settings.traces)
            self._tasks.spawn(self._tracer.run())
        self._deps = BrainDeps(
            store=self.store,
            nc=self._nc,
            hands=HandsClient(self._nc),
            settings=self.settings,
            providers=self.providers.provider_for,
            crash=brain_crashpoints(self.settings.crash_at),
            observer=self._tracer,
            metrics=self.metrics,
        )
        subscription = await self._js.pull_subscribe(
            WORK_SUBJECTS,
            durable=WORK_CONSUMER,
            stream=WORK_STREAM,
            config=ConsumerConfig(ack_wait=ACK_WAIT_S, max_deliver=-1, max_ack_pending=-1),
        )
        await self._nc.subscribe(AUDIT_SUBJECT, queue=AUDIT_QUEUE, cb=self._on_audit)
        await self._nc.subscribe(
            SANDBOX_CHECK_SUBJECT, queue=SANDBOX_CHECK_QUEUE, cb=self._on_sandbox_check
        )
        if self.settings.peer_check_s > 0:
            js = self._js
            peers = Peers(
                self.settings.brain_id,
                self._nc,
                self.store,
                lambda session_id, reason: request_attention(js, session_id, reason),
                self.settings.peer_check_s,
            )
            await peers.start()
            self._tasks.spawn(peers.announce())
            self._tasks.spawn(peers.watch())
        for session_id in await self.store.leases_of(self.settings.brain_id):
            self._tasks.spawn(self._take_back(session_id))
        self._tasks.spawn(self._pull(subscription))
        self._tasks.spawn(self._sweep())
        self._tasks.spawn(self._forward_outcomes())
        log.info("brain %s serving on %s", self.settings.brain_id, self.settings.nats_url)

    async def close(self) -> None:
        await self._tasks.cancel()
        await self._hand_on()
        if self._tracer is not None:
            await self._tracer.close()
        if self._nc is not None:
            # Flush what was published (acks, destroys), then close. Not drain: a pull
            # subscription whose fetch was cancelled never drains, and whatever this brain
            # did not ack goes to another brain anyway.
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await self._nc.flush(timeout=2)
            await self._nc.close()
            # close() cancels its subscriptions' tasks without awaiting them: let them end.
            await asyncio.sleep(0)
        await self.providers.aclose()
        if self._owns_store:
            await self.store.close()
        if self.metrics_server is not None:
            await asyncio.to_thread(self.metrics_server.close)

    async def _hand_on(self) -> None:
        """Let go of every session this brain still holds and queue each for another brain,
        so a brain stopped on purpose (SIGTERM: a rolling update, a scale-down) is replaced
        at once, not when its leases run out. Its runs have ended: nothing of this brain
        writes to them any more (and a claim's new epoch would fence anything that did)."""
        if self._js is None:
            return
        try:
            held = await self.store.expire_leases_of(self.settings.brain_id)
        except StoreError as exc:
            log.warning("letting go of the sessions this brain holds failed: %s", exc)
            return  # its leases run out, and the sweepers of other brains queue them then
        for session_id in held:
            try:
                await request_attention(
                    self._js, session_id, f"brain {self.settings.brain_id} stopped"
                )
            except (nats.errors.Error, TimeoutError) as exc:
                # Its lease has ended: the sweepers of other brains queue it anyway.
                log.warning("queueing %s failed: %r", session_id, exc)
        if held:
            log.info("brain %s stopped: handed on %d sessions", self.settings.brain_id, len(held))

    # -- work -------------------------------------------------------------------------------

    async def _pull(self, subscription: JetStreamContext.PullSubscription) -> None:
        leaderless = _Leaderless(WORK_STREAM)
        while True:
            free = self.settings.max_sessions - self._handling
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                messages = await subscription.fetch(free, timeout=1.0)
            except TimeoutError:  # nats raises both its own and asyncio's
                leaderless.over()  # the fetch was taken: nothing to do
                continue
            except Exception as exc:
                # The loop that feeds the brain must outlive any fault of NATS's.
                self._setback("fetching work failed: %r", exc, leaderless=leaderless)
                await asyncio.sleep(0.5)
                continue
            leaderless.over()
            for message in messages:
                self._handling += 1
                self._tasks.spawn(self._handle(message))

    async def _handle(self, message: Msg) -> None:
        try:
            try:
                attention = _ATTENTION.decode(message.data)
            except msgspec.DecodeError:
                log.warning("dropping a malformed work message: %r", message.data[:200])
                await message.term()
                return
            session_id = attention.session_id
            if session_id in self.active:
                # The run driving it hears the same message on its own subscription.
                await message.ack()
                return
            progress = asyncio.create_task(_keep_in_progress(message))
            try:
                await self._drive(session_id)
            except (StoreError, nats.errors.Error, OSError) as exc:
                self._setback("session %s: %s; it goes back on the queue", session_id, exc)
                with contextlib.suppress(nats.errors.Error):
                    await message.nak(delay=1.0)
                return
            finally:
                progress.cancel()
            await message.ack()
        finally:
            self._handling -= 1
            self._slot_freed.set()

    async def _take_back(self, session_id: str) -> None:
        try:
            await self._drive(session_id)
        except (StoreError, nats.errors.Error, OSError) as exc:
            self._setback("session %s: taking it back failed: %s", session_id, exc)

    async def _drive(self, session_id: str) -> WakeResult | None:
        assert self._deps is not None
        if session_id in self.active:
            return None
        self.active.add(session_id)
        try:
            while True:
                result = await wake(session_id, self._deps)
                log.info(
                    "session %s: %s (%s) at seq %d",
                    session_id,
                    result.stopped,
                    result.status,
                    result.head_seq,
                )
                if not result.again:
                    return result
        finally:
            self.active.discard(session_id)

    async def _on_audit(self, message: Msg) -> None:
        # Its own task: a long log being folded holds up no other request.
        self._tasks.spawn(answer_audit(self.store, message))

    async def _on_sandbox_check(self, message: Msg) -> None:
        self._tasks.spawn(answer_sandbox_check(self.store, message))

    # -- outcomes of sessions nobody holds ---------------------------------------------------

    async def _forward_outcomes(self) -> None:
        assert self._js is not None
        subscription = await _outcome_consumer(self._js)
        leaderless = _Leaderless(OUTCOME_STREAM)
        while True:
            try:
                messages = await subscription.fetch(64, timeout=1.0)
            except TimeoutError:  # nats raises both its own and asyncio's
                leaderless.over()
                continue
            except Exception as exc:
                self._setback("fetching outcomes failed: %r", exc, leaderless=leaderless)
                await asyncio.sleep(0.5)
                continue
            leaderless.over()
            for message in messages:
                await self._forward(message)

    async def _forward(self, message: Msg) -> None:
        """The brain holding the session heard the outcome itself; otherwise wake it."""
        assert self._js is not None
        session_id = message.subject.rsplit(".", 1)[-1]
        try:
            if session_id not in self.active:
                info = await self.store.get_session(session_id)
                held = info.lease_owner is not None and (info.lease_until or 0) > time.time()
                if not held and info.status not in TERMINAL_STATUSES:
                    msg_id = message.header.get("Nats-Msg-Id", "") if message.header else ""
                    await request_attention(
                        self._js, session_id, "tool outcome", msg_id=f"outcome/{msg_id}"
                    )
            await message.ack()
        except SessionNotFound:
            await message.ack()
        except (StoreError, nats.errors.Error) as exc:
            self._setback("forwarding an outcome of %s failed: %s", session_id, exc)
            with contextlib.suppress(nats.errors.Error):
                await message.nak(delay=1.0)

    # -- the sweeper ------------------------------------------------------------------------

    async def _sweep(self) -> None:
        assert self._js is not None
        leaderless = _Leaderless(WORK_STREAM)
        while True:
            await asyncio.sleep(self.settings.sweep_every_s)
            try:
                due = await self.store.sessions_due()
            except StoreError as exc:
                self._setback("sweeping failed: %s", exc)
                continue
            # One message per session per second, however many brains sweep it.
            window = int(time.time())
            # While the store takes no writes, claims fail and the same sessions come due
            # every sweep: the store has said so once already.
            level = logging.INFO if self.store.health.up("write") else logging.DEBUG
            for index, session_id in enumerate(due):
                try:
                    queued = await request_attention(
                        self._js, session_id, "sweep", msg_id=f"sweep/{session_id}/{window}"
                    )
                except (nats.errors.Error, TimeoutError) as exc:
                    # JetStream took none (no stream leader while a NATS cluster elects
                    # one, or no NATS): it takes no other either. The next sweep tries all.
                    self._setback(
                        "re-queueing %s (and %d more due) failed: %r",
                        session_id,
                        len(due) - index - 1,
                        exc,
                        leaderless=leaderless,
                    )
                    break
                leaderless.over()
                if queued:  # not a repeat of this second's message: worth a line
                    log.log(
                        level, "session %s needs a brain (lease expired or timer due)", session_id
                    )

    def _setback(self, message: str, *args: object, leaderless: _Leaderless | None = None) -> None:
        """Log a failed step that will be tried again; quietly when its cause, an outage of
        the store or of NATS, or a stream without a leader, has been announced once already
        (see `StoreHealth`, `NatsLinkLog` and `_Leaderless`)."""
        error = args[-1]
        announced = (
            (isinstance(error, StoreUnavailable) and not self.store.health.up("write"))
            or (self._nc is not None and not self._nc.is_connected)
            or (leaderless is not None and leaderless.announced(error))
        )
        log.log(logging.DEBUG if announced else logging.WARNING, message, *args)


class _Leaderless:
    """A stream without a leader (a NATS cluster electing one after losing a node: 503 to
    every fetch, "no response from stream" to every publish, for some seconds), said once
    when it starts and once when it ends, not at every try of one loop."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.since: float | None = None

    def announced(self, error: object) -> bool:
        """Whether `error` is part of an outage already announced (announcing it if new)."""
        if not isinstance(
            error, nats.js.errors.ServiceUnavailableError | nats.js.errors.NoStreamResponseError
        ):
            return False
        if self.since is None:
            self.since = time.monotonic()
            log.warning(
                "%s has no leader in JetStream (a NATS node lost?); trying until it has",
                self.stream,
            )
        return True

    def over(self) -> None:
        if self.since is not None:
            log.warning(
                "%s has a leader again, after %.1f s", self.stream, time.monotonic() - self.since
            )
            self.since = None


async def _outcome_consumer(js: JetStreamContext) -> JetStreamContext.PullSubscription:
    """The shared consumer of outcomes, once the hands have made the stream."""
    while True:
        try:
            return await js.pull_subscribe(
                OUTCOME_SUBJECTS,
                durable=OUTCOME_CONSUMER,
                stream=OUTCOME_STREAM,
                config=ConsumerConfig(
                    deliver_policy=DeliverPolicy.NEW, ack_wait=ACK_WAIT_S, max_deliver=-1
                ),
            )
        except nats.js.errors.NotFoundError:
            await asyncio.sleep(1.0)


async def _keep_in_progress(message: Msg) -> None:
    while True:
        await asyncio.sleep(ACK_WAIT_S / 3)
        with contextlib.suppress(nats.errors.Error):
            await message.in_progress()
