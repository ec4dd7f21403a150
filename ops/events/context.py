"""The event log's settings, built once from Settings: Redis, the stream, the observer's state and git."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis

from ops.config import Settings, check_url
from ops.errors import ConfigError
from ops.events.changes import DEFAULT_GROUP, ChangeStore
from ops.events.observer import Observer, Policy
from ops.events.publisher import Streams, connect
from ops.events.reconciler import Reconciler
from ops.events.sharing import check_group, share_state_dir


def _list(raw: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in raw.split(",") if p.strip())


@dataclass(frozen=True)
class EventsConfig:
    redis_url: str
    streams: Streams
    state_dir: Path
    repo: Path
    remote: str
    branch: str
    policy: Policy
    max_deliveries: int
    telegram_token: str
    telegram_chats: tuple[int, ...]
    telegram_api: str
    group: str = DEFAULT_GROUP  # OPS_EVENTS_GROUP: the operators' group the state directory is shared with
    # the routing webhook the bot sends questions to (OPS_N8N_URL, else https://N8N_DOMAIN) and its key
    n8n_url: str = ""
    webhook_key: str = ""

    def client(self) -> redis.Redis:
        return connect(self.redis_url)

    def store(self) -> ChangeStore:
        """The change requests alone (what `ops cr` reads and decides): no git, no Telegram."""
        return ChangeStore(self.state_dir / "change-requests", self.client(), self.streams, self.group)

    def share_state_dir(self, create: bool = False) -> list[str]:
        """Give the state directory to the operators' group (creating the group if create, as root); return changes."""
        return share_state_dir(self.state_dir, self.group, create)

    def observer(self, client: redis.Redis | None = None) -> Observer:
        from ops.events.telegram import bot_for
        from ops.events.telegram import offset_key as telegram_offset

        bot = bot_for(self)
        offset_key = telegram_offset(self.streams.name)
        return Observer(
            client or self.client(),
            self.state_dir,
            Reconciler(self.repo, self.policy.roots, self.remote, self.branch),
            self.policy,
            self.streams,
            on_pending=bot.notify_pending if bot else None,
            poll_decisions=(lambda store: bot.poll_decisions(store, offset_key)) if bot else None,
            group=self.group,
        )


def events_config(settings: Settings) -> EventsConfig:
    """Given Settings, return the event log's configuration. Raise ConfigError naming a bad value."""
    env = settings.effective_env
    url = env.get("OPS_REDIS_URL") or f"redis://:{quote(env.get('REDIS_PASSWORD', ''), safe='')}@127.0.0.1:6379/0"
    check_url("OPS_REDIS_URL", url, ("redis", "rediss", "unix"), "redis://:PASSWORD@127.0.0.1:6379/0")
    roots = _list(env.get("OPS_EVENTS_ROOTS", "")) or Policy().roots
    auto = _list(env.get("OPS_EVENTS_AUTO_ROOTS", "")) or Policy().auto_roots
    if not set(auto) <= set(roots):
        raise ConfigError(f"OPS_EVENTS_AUTO_ROOTS {auto} must be among OPS_EVENTS_ROOTS {roots}")
    chats: list[int] = []
    for chat in _list(env.get("OPS_TELEGRAM_CHAT_IDS", "")):
        try:
            chats.append(int(chat))
        except ValueError as exc:
            raise ConfigError(f"OPS_TELEGRAM_CHAT_IDS: {chat!r} is not a chat id (a number)") from exc
    deliveries = env.get("OPS_EVENTS_MAX_DELIVERIES") or "5"
    if not deliveries.isdigit() or int(deliveries) < 1:
        raise ConfigError(f"OPS_EVENTS_MAX_DELIVERIES must be a whole number of at least 1, got {deliveries!r}")
    state = Path(env.get("OPS_EVENTS_STATE_DIR") or "./.ops/events")
    repo = Path(env.get("OPS_EVENTS_REPO") or "./truth")
    return EventsConfig(
        redis_url=url,
        streams=Streams(env.get("OPS_EVENTS_STREAM") or "agent_events"),
        state_dir=state if state.is_absolute() else settings.project_dir / state,
        repo=repo if repo.is_absolute() else settings.project_dir / repo,
        remote=env.get("OPS_EVENTS_REMOTE", "origin"),
        branch=env.get("OPS_EVENTS_BRANCH") or "main",
        policy=Policy(roots, auto),
        max_deliveries=int(deliveries),
        telegram_token=env.get("OPS_TELEGRAM_BOT_TOKEN", ""),
        telegram_chats=tuple(chats),
        telegram_api=env.get("OPS_TELEGRAM_API", ""),
        group=check_group(env.get("OPS_EVENTS_GROUP") or DEFAULT_GROUP),
        n8n_url=env.get("OPS_N8N_URL") or (f"https://{env['N8N_DOMAIN']}" if env.get("N8N_DOMAIN") else ""),
        webhook_key=env.get("N8N_WEBHOOK_SECRET", ""),
    )
