"""The composition root: the one place that builds every part and hands each its collaborators.

Nothing else in the gateway looks a collaborator up; if a part needs something, it is passed in
here. `build_gateway` is also what tests call to get a real app without a server.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import gevent
from flask import Flask
from flask_sock import Sock

import webui
from gateway.api.console_browser import build_console_browser
from gateway.api.console_memory import build_console_memory
from gateway.api.health import health
from gateway.api.metrics import build_metrics_api
from gateway.api.outbox import build_send_api
from gateway.assistant.chat_memory import ChatMemory
from gateway.assistant.memory import Memory, Owners
from gateway.assistant.memory_commands import MemoryCommands
from gateway.assistant.memory_index import MemoryIndex
from gateway.assistant.reminders import Reminders
from gateway.assistant.schedule_api import build_schedules_api
from gateway.assistant.schedule_store import ScheduleStore
from gateway.assistant.scheduler import Scheduler
from gateway.assistant.summaries import Summaries
from gateway.channels.base import Services
from gateway.channels.manager import ChannelSet
from gateway.channels.table import CHANNELS, channel_class, channel_options, chat_platforms
from gateway.channels.ws_socket import reader_thread
from gateway.common.workspace import Workspace
from gateway.config import Config, GatewayConfig, for_skills
from gateway.core.builtins import Builtins, ToolsFor
from gateway.core.chat import ChatResponder
from gateway.core.execute import Executor
from gateway.core.inbox import Inbox
from gateway.core.intake import Intake
from gateway.core.outbox import Outbox
from gateway.core.pipeline import Pipeline
from gateway.core.sessions import SessionManager
from gateway.core.settings import Process, Settings, build_settings
from gateway.core.store import Store
from gateway.guards.chain import Allow
from gateway.knowledge import KnowledgeBase
from gateway.knowledge.meaning import Embed, Embeddings
from gateway.knowledge.search import load_dictionary
from gateway.live.reload import Reloader, off_loop
from gateway.mcp.supervisor import McpServers
from gateway.mcp.tools import ModelTools
from gateway.models.base import ModelError
from gateway.observe.alerting.service import Alerting
from gateway.observe.audit import audit, config_changes
from gateway.observe.metrics import Metrics
from gateway.observe.redact import redact
from gateway.observe.window import Window
from gateway.server import faults
from gateway.server.starting import Starting
from gateway.skills.catalog import SkillLoader, SkillSet
from gateway.skills.hostpool import Serve, SkillHostPool
from gateway.tools.hosted import HostedTools
from gateway.web.credentials import request_credential
from gateway.web.door import caller_of, web_door
from gateway.web.errors import register_error_handlers

log = logging.getLogger(__name__)

WS_PING_INTERVAL = 25
OUTBOX_FLUSH = 5.0  # seconds a stop gives the outbox to send what is due
RESTART_ONLY = ("host", "port", "max_connections", "max_body_bytes", "keepalive_timeout",
                "request_timeout", "max_connections_per_ip")


@dataclass
class Gateway:
    app: Flask
    workspace: Workspace
    process: Process
    pipeline: Pipeline
    reloader: Reloader
    channels: ChannelSet
    alerting: Alerting
    outbox: Outbox
    memory: MemoryCommands
    scheduler: Scheduler
    reminders: Reminders
    mcp: McpServers
    hosted: HostedTools  # the browser and the compose stacks

    @property
    def config(self) -> Config:
        return self.pipeline.settings.config

    @property
    def knowledge_meaning(self) -> Embeddings:
        """The knowledge base's search by meaning (idle while no embedding model is named)."""
        meaning = self.reloader.knowledge.meaning
        assert meaning is not None  # build_gateway gives it one
        return meaning

    def start(self) -> None:
        """Build the indexes, load the skills, watch the workspace, start the channels that
        are switched on and the alert rules (ERROR log lines go by mail when alerts have an
        SMTP sender). The process runs this after its port answers (`server.starting`)."""
        faults.wait_for_release("start")
        self.mcp.apply(self.config.mcp_servers)
        self.reloader.start()  # a file saved from now on is seen, and applied after this load
        skills = gevent.spawn(self.reloader.load_skills)  # the skill hosts: processes
        # meanwhile jieba's dictionary (~0.5 s of CPU, in slices on the loop: see its
        # docstring) and the indexes (on the thread pool, as reloads are)
        load_dictionary(pause=gevent.idle)
        off_loop(self.reloader.knowledge.reload)
        off_loop(self.memory.memory.sync)  # what was edited by hand while the gateway was stopped
        skills.get()  # raises what the load raised
        self.reloader.loaded()
        self.knowledge_meaning.start()
        self.channels.start()
        # after a crash, what was stored and not sent goes now
        self.outbox.start(send=not faults.holding("outbox"))
        self.scheduler.start()  # what came due while the gateway was down: run once or skip
        logging.getLogger().addHandler(self.alerting.error_mail)
        self.alerting.start()

    def apply_config(self, config: Config) -> None:
        """Take a new, validated config.yaml: build a whole settings snapshot and swap it.

        Raises ConfigError (the reloader then keeps the last good config) when a channel's
        options are wrong. The listening address and connection limits need a restart.
        """
        self.hosted.apply(config.tools)
        settings = settings_for(config, self.process, self.mcp, self.hosted)
        before = self.config.gateway
        changes = config_changes(self.config.model_dump(by_alias=True),
                                 config.model_dump(by_alias=True))
        old = self.pipeline.use_settings(settings)
        self.pipeline.use_builtins(builtins_for(config, self.memory, self.reminders))
        audit("config.applied", actor="config.yaml", changes=changes)
        self.reloader.loader.configure(config.skills, for_skills(config))
        self.app.config["SOCK_SERVER_OPTIONS"] = sock_options(config.gateway)
        self.channels.apply(settings.channels)
        self.outbox.wake()  # a channel switched on sends what waited for it
        self.alerting.apply(config.alerts)
        configure_meaning(self.knowledge_meaning, config)
        self.mcp.apply(config.mcp_servers)  # exactly the servers whose entry changed
        old.retire()  # its model pools close once their last call finishes
        changed = [k for k in RESTART_ONLY if getattr(before, k) != getattr(config.gateway, k)]
        if changed:
            log.warning("gateway.%s changed: restart the gateway to apply", ", gateway.".join(
                changed))

    def stop(self, timeout: float) -> list[str]:
        """Finish in-flight replies (up to `timeout`), then stop every part.

        Returns every failure instead of stopping at the first, so one broken channel does not
        keep the others (or the database) open.
        """
        problems: list[str] = []
        if not self.pipeline.drain(timeout):
            problems.append(f"messages still in flight after {timeout:.0f}s were abandoned")
        self.reloader.stop()
        self.knowledge_meaning.stop()
        self.scheduler.stop()
        problems += self.channels.stop()  # enterprise_im's answers reach the outbox first
        if not self.outbox.stop(OUTBOX_FLUSH):
            problems.append("the outbox was still sending; what is left goes after the next "
                            "start")
        self.alerting.stop()
        self.mcp.stop()
        self.hosted.stop()
        logging.getLogger().removeHandler(self.alerting.error_mail)
        for pool in self.pipeline.settings.models.values():
            pool.close()
        self.process.metrics.close()
        self.process.store.close()
        return problems


def settings_for(config: Config, process: Process, mcp: McpServers | None = None,
                 hosted: HostedTools | None = None) -> Settings:
    """A settings snapshot with every channel's options checked by the channel itself;
    raises ConfigError for a wrong one. The model's tools gain the MCP tools `mcp_servers:`
    offers, as long as their server runs (`gateway.mcp.tools.ModelTools`)."""
    channels = channel_options(config, str(process.workspace.config_path))
    settings = build_settings(config, process, channels, chat_platforms())
    if mcp is None:
        return settings
    own = {**settings.model_tools, **(hosted.for_model(config.tools) if hosted else {})}
    return replace(settings, model_tools=ModelTools(own, mcp))


def skill_questions(outbox: Outbox, mcp: McpServers, hosted: HostedTools) -> Serve:
    """Who answers a skill host's question mid-call: `context.send` the outbox,
    `context.tool("server.tool")` the MCP servers, `context.tool("browser" | "compose")`
    the gateway's hosted tools."""
    def answer(question: dict[str, Any], msg: dict[str, Any]) -> dict[str, Any]:
        if question.get("op") == "tool":
            return hosted.for_skill(question, msg)
        return (mcp.for_skill if question.get("op") == "mcp" else outbox.for_skill)(question,
                                                                                    msg)
    return answer


def builtins_for(config: Config, memory: MemoryCommands, reminders: Reminders) -> Builtins:
    """The gateway's own commands and per-sender tools for this config: /remember, /memory,
    /forget and the memory tool while `memory.enabled` (otherwise /help does not offer them);
    /remind, /reminders, /unremind and the model's set_reminder."""
    commands, makers = reminders.commands(), list[ToolsFor]([reminders.tools])
    if config.memory.enabled:
        commands, makers = memory.commands() + commands, memory.tool_makers() + makers
    return Builtins.of(commands, makers)


def sock_options(gateway: GatewayConfig) -> dict[str, Any]:
    """simple-websocket's options (read at each handshake, so a reload applies to the next
    connection). Its frame ceiling lets a frame carry `max_upload_bytes` of files in base64
    beside a body of `max_body_bytes`; a frame over it closes the connection (1009, message
    too big), and the channel answers smaller ones over their own limits with an error frame.
    `reader_thread`: no reader thread for a route that reads its own socket (`/ws`)."""
    return {"ping_interval": WS_PING_INTERVAL,
            "max_message_size": ws_frame_limit(gateway), "thread_class": reader_thread}


def ws_frame_limit(gateway: GatewayConfig) -> int:
    return gateway.max_body_bytes + -(-gateway.max_upload_bytes * 4 // 3)


def embed_through(pipeline: Pipeline) -> Embed:
    """Embedding calls through the current settings' pool of the named model: its endpoints,
    fail-over and credentials. Errors come back as one line without credentials."""
    def embed(model: str, texts: list[str], timeout: float | None) -> list[list[float]]:
        pool = pipeline.settings.models.get(model)
        if pool is None:
            raise ModelError(f"models.{model} is not in config.yaml any more")
        try:
            return pool.embed(texts, timeout=timeout)
        except ModelError as e:
            raise ModelError(redact(str(e))) from e
    return embed


def configure_meaning(meaning: Embeddings, config: Config) -> None:
    """Search by meaning as `knowledge:` says: on with its embedding model, or off."""
    name = config.knowledge.embedding_model
    model_id = (config.models[name].model or name) if name else ""
    meaning.configure(name, model_id, config.knowledge.min_similarity)


def build_gateway(workspace: Workspace, config: Config,
                  starting: Starting | None = None) -> Gateway:
    """Everything the gateway process runs; raises ConfigError for bad channel options.
    `starting`: the process's gate, where requests wait until `Gateway.start` is done."""
    store = Store(workspace.db_url)
    metrics = Metrics(Window(max(600, int(config.alerts.longest_window()) + 1)))
    process = Process(workspace, store, metrics=metrics)
    mcp = McpServers(workspace.root)  # started with the gateway (Gateway.start)
    hosted = HostedTools(workspace.root)  # the browser starts at its first call
    hosted.apply(config.tools)
    # every channel's module (its Options check config.yaml), SDKs and all: ~0.3 s of imports,
    # on the thread pool so the loop watch sees no stall before the port opens
    off_loop(lambda: [channel_class(name) for name in CHANNELS])
    settings = settings_for(config, process, mcp, hosted)
    knowledge = KnowledgeBase(workspace.knowledge,  # loaded by Gateway.start
                              max_tokens=min(500, config.gateway.context_tokens // 4), load=False)
    sessions = SessionManager(store)
    memory = Memory(workspace.root / "memory", MemoryIndex(store))  # synced by Gateway.start
    facts = MemoryCommands(memory, Owners(store, chat_platforms()))
    chat = ChatResponder(sessions, knowledge, workspace.root,
                         ChatMemory(facts, Summaries(store)))
    pipeline = Pipeline(store=store, settings=settings, metrics=metrics,
                        executor=Executor(sessions, chat, workspace.root))
    knowledge.meaning = Embeddings(embed_through(pipeline), workspace.data / "embeddings",
                                   lambda: knowledge.index.passages, off_loop=off_loop)
    configure_meaning(knowledge.meaning, config)

    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = config.gateway.max_body_bytes
    app.config["SOCK_SERVER_OPTIONS"] = sock_options(config.gateway)
    register_error_handlers(app, config.gateway.max_body_bytes)
    if starting is not None:  # first: the channels' routes are off until they start
        app.before_request(starting.gate)
    app.before_request(web_door(pipeline))  # then before every route and every guard
    app.register_blueprint(health)
    app.register_blueprint(build_metrics_api(metrics, lambda req: isinstance(pipeline.admit(
        caller_of(pipeline, req, "console", request_credential(req))), Allow)))

    hosts = SkillHostPool(workspace.root, config.skills.host_processes, for_skills(config),
                          config.skills.env)
    loader = SkillLoader(workspace.root, hosts, config.skills.timeout)
    channels = ChannelSet()
    outbox = Outbox(store, lambda: channels.channels, workspace=workspace.root, metrics=metrics,
                    limiter=lambda: process.limiter_for(
                        pipeline.settings.config.auth.rate_limit.storage),
                    policy=lambda: pipeline.settings.config.outbox)
    test_clock = faults.fault_clock()
    scheduler = Scheduler(ScheduleStore(store, outbox.rows), outbox,
                          clock=test_clock or time.time,
                          zone=lambda: ZoneInfo(pipeline.settings.config.gateway.timezone),
                          missed=lambda: pipeline.settings.config.schedules.missed)
    if test_clock is not None:
        test_clock.watch(scheduler.wake)
    reminders = Reminders(scheduler, lambda: channels.channels)
    pipeline.use_builtins(builtins_for(config, facts, reminders))

    def use_skills(skills: SkillSet) -> None:
        pipeline.use_skills(skills)
        scheduler.use_skills(skills.schedules)  # their @context.schedule functions

    reloader = Reloader(workspace, config, loader, knowledge, on_skills=use_skills)
    # memory/<owner>.md edited by hand: on the loop (a changed file's facts, a few ms), so
    # the owners' locks are only ever taken by greenlets of this one loop
    reloader.on_memory = memory.sync
    hosts.serve = skill_questions(outbox, mcp, hosted)  # context.send, context.tool("x.y")
    channels.build(Services(pipeline, app, Sock(app), store, reloader,
                            Path(webui.__file__).parent, channels.listing, metrics,
                            process.token_cache, Intake(pipeline, Inbox(workspace.root), store),
                            outbox, mcp.listing), settings.channels)
    http = channels.channels["http"]
    app.register_blueprint(build_send_api(pipeline, outbox, http.name,
                                          lambda: http.status().state != "stopped"))
    console = channels.channels["console"]
    app.register_blueprint(build_schedules_api(pipeline, scheduler, console.name,
                                               lambda: console.status().state != "stopped"))
    app.register_blueprint(build_console_memory(pipeline, memory, console.name,
                                                lambda: console.status().state != "stopped"))
    app.register_blueprint(build_console_browser(pipeline, workspace.root, console.name,
                                                 lambda: console.status().state != "stopped"))
    gateway = Gateway(app, workspace, process, pipeline, reloader, channels,
                      Alerting(config.alerts, metrics.window, stale=channels.stale), outbox,
                      facts, scheduler, reminders, mcp, hosted)
    reloader.on_config = gateway.apply_config  # a valid config.yaml edit lands here
    return gateway
