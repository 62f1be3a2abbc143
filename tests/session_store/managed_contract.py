"""What every backend keeps for the Managed Agents API: versioned resources (agents,
environments), sessions made from them, their amendments and the filters that list them.
Mixed into each backend's test class with the main contract."""

from __future__ import annotations

import asyncio

import pytest

from schemas import (
    AgentSpec,
    ManagedOrigin,
    SessionArchived,
    SessionCreated,
    SessionStatus,
    SessionUpdated,
    UserMessage,
)
from session_store import (
    EventStore,
    InvalidInput,
    ResourceNotFound,
    SessionBusy,
    VersionConflict,
)


def made_from(agent_id: str, version: int) -> SessionCreated:
    origin = ManagedOrigin(agent_id=agent_id, agent_version=version, environment_id="env_1")
    return SessionCreated(spec=AgentSpec(turn_end="idle"), managed=origin)


class ManagedContract:
    async def test_a_resource_keeps_every_version_and_updates_only_from_the_latest(
        self, store: EventStore
    ) -> None:
        first = await store.put_resource("acme", "agent", '{"name":"a"}')
        assert first.version == 1 and first.resource_id.startswith("agent_")
        second = await store.put_resource(
            "acme", "agent", '{"name":"b"}', resource_id=first.resource_id, expect_version=1
        )
        assert second.version == 2 and second.created_at == first.created_at
        with pytest.raises(VersionConflict):
            await store.put_resource(
                "acme", "agent", '{"name":"c"}', resource_id=first.resource_id, expect_version=1
            )
        assert (await store.get_resource("acme", "agent", first.resource_id)).body == '{"name":"b"}'
        old = await store.get_resource("acme", "agent", first.resource_id, version=1)
        assert old.body == '{"name":"a"}'
        versions = await store.resource_versions("acme", "agent", first.resource_id, limit=1)
        assert [v.version for v in versions.items] == [2] and versions.next_cursor == "2"
        rest = await store.resource_versions(
            "acme", "agent", first.resource_id, before_version=int(versions.next_cursor)
        )
        assert [v.version for v in rest.items] == [1] and rest.next_cursor is None

    async def test_concurrent_updates_of_one_version_let_exactly_one_win(
        self, store: EventStore
    ) -> None:
        agent = await store.put_resource("acme", "agent", "{}")
        outcomes = await asyncio.gather(
            *(
                store.put_resource(
                    "acme", "agent", f'{{"n":{i}}}', resource_id=agent.resource_id, expect_version=1
                )
                for i in range(5)
            ),
            return_exceptions=True,
        )
        assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
        assert all(isinstance(o, VersionConflict) for o in outcomes if isinstance(o, BaseException))

    async def test_resources_are_per_tenant_and_kind_listed_newest_first_and_archived(
        self, store: EventStore
    ) -> None:
        made = [await store.put_resource("acme", "environment", "{}") for _ in range(3)]
        other = await store.put_resource("globex", "environment", "{}")
        await store.put_resource("acme", "agent", "{}")
        with pytest.raises(ResourceNotFound):
            await store.get_resource("acme", "environment", other.resource_id)
        with pytest.raises(ResourceNotFound):
            await store.get_resource("acme", "agent", made[0].resource_id)
        # Newest first by id: ids are time-ordered to the millisecond, then random.
        newest_first = sorted((r.resource_id for r in made), reverse=True)
        page = await store.list_resources("acme", "environment", limit=2)
        assert [r.resource_id for r in page.items] == newest_first[:2]
        rest = await store.list_resources("acme", "environment", cursor=page.next_cursor)
        assert [r.resource_id for r in rest.items] == newest_first[2:]
        archived = await store.archive_resource("acme", "environment", made[1].resource_id)
        assert archived.archived_at is not None
        again = await store.archive_resource("acme", "environment", made[1].resource_id)
        assert again.archived_at == archived.archived_at
        listed = await store.list_resources("acme", "environment")
        assert made[1].resource_id not in [r.resource_id for r in listed.items]
        everything = await store.list_resources("acme", "environment", include_archived=True)
        assert len(everything.items) == 3
        await store.delete_resource("acme", "environment", made[0].resource_id)
        with pytest.raises(ResourceNotFound):
            await store.get_resource("acme", "environment", made[0].resource_id)
        with pytest.raises(InvalidInput):
            await store.put_resource("acme", "agent", "x" * (1024 * 1024 + 1))

    async def test_a_session_made_from_an_agent_is_listed_by_it_and_amended_in_its_log(
        self, store: EventStore
    ) -> None:
        one = await store.create_session("acme", made_from("agent_a", 1))
        two = await store.create_session("acme", made_from("agent_a", 2))
        plain = await store.create_session("acme", SessionCreated(spec=AgentSpec()))
        assert (one.agent_id, one.agent_version, one.environment_id) == ("agent_a", 1, "env_1")
        # Ordered by id: time-ordered to the millisecond, then random.
        made = sorted([one.session_id, two.session_id])
        by_agent = await store.list_sessions("acme", agent_id="agent_a")
        assert [s.session_id for s in by_agent.items] == made[::-1]
        pinned = await store.list_sessions("acme", agent_id="agent_a", agent_version=1)
        assert [s.session_id for s in pinned.items] == [one.session_id]
        every = sorted([one.session_id, two.session_id, plain.session_id])
        oldest = await store.list_sessions("acme", oldest_first=True, limit=2)
        assert [s.session_id for s in oldest.items] == every[:2]
        tail = await store.list_sessions("acme", oldest_first=True, cursor=oldest.next_cursor)
        assert [s.session_id for s in tail.items] == every[2:]

        updated = await store.amend_session(
            one.session_id, SessionUpdated(title="renamed", metadata={"k": "v"})
        )
        assert (updated.title, updated.metadata, updated.head_seq) == ("renamed", {"k": "v"}, 2)
        archived = await store.amend_session(one.session_id, SessionArchived())
        assert archived.archived_at is not None
        assert (await store.get_session(one.session_id)).title == "renamed"
        live = await store.list_sessions("acme", include_archived=False)
        assert one.session_id not in [s.session_id for s in live.items]
        assert [r.type for r in await store.read(one.session_id)] == [
            "session.created",
            "session.updated",
            "session.archived",
        ]
        assert (await store.verify(one.session_id)).ok
        with pytest.raises(InvalidInput):
            await store.amend_session(one.session_id, UserMessage(text="no"))  # type: ignore[arg-type]

    async def test_an_idle_session_can_be_deleted_but_not_a_running_one(
        self, store: EventStore
    ) -> None:
        idle = await store.create_session("acme", made_from("agent_a", 1))
        await store.delete_session(idle.session_id, unless_running=True)
        running = await store.create_session("acme", made_from("agent_a", 1))
        await store.append_input(running.session_id, [SessionStatus(status="running")])
        with pytest.raises(SessionBusy):
            await store.delete_session(running.session_id, unless_running=True)
        await store.append_input(
            running.session_id, [SessionStatus(status="waiting", reason="waiting for an approval")]
        )
        await store.delete_session(running.session_id, unless_running=True)
