// Every string the console shows, in English and Chinese. The browser's language picks one;
// the switch in the top bar overrides it (kept in localStorage).
const STRINGS = {
  en: {
    "skip": "Skip to content", "menu": "Menu", "signout": "Sign out",
    "lang.switch": "Language: switch to Chinese", "lang.other": "中文",
    "theme.switch": "Theme: light, dark or system", "theme.light": "Light", "theme.dark": "Dark", "theme.system": "System",
    "signin.title": "Sign in to the console",
    "signin.help": "Run `moltbot dashboard --token-gen` and open the link it prints, or paste the token here.",
    "signin.token": "Token", "signin.submit": "Sign in", "signin.as": "Signed in as {0}",
    "nav.overview": "Overview", "nav.logs": "Logs", "nav.sessions": "Sessions", "nav.config": "Config",
    "nav.skills": "Skills & knowledge", "nav.chat": "Chat", "nav.outbox": "Outbox", "nav.memory": "Memory", "nav.schedules": "Schedules",
    "sc.all": "Finished ones too", "sc.zone": "Times in {0}", "sc.id": "Id · owner", "sc.next": "Next run",
    "sc.cancel": "Cancel", "sc.cancelled": "Cancelled {0}.", "sc.last": "last run: {0}",
    "scs.active": "waiting", "scs.done": "done", "scs.skipped": "skipped", "scs.cancelled": "cancelled", "scs.removed": "skill removed",
    "sc.empty": "No reminders or schedules. Set one in a chat (/remind 9:00 call mom) or declare one in a skill (@context.schedule).",
    "origin.reminder": "reminder", "origin.schedule": "a skill's schedule",
    "mem.owner": "Owner", "mem.new": "A fact to remember", "mem.add": "Add", "mem.added": "Kept.",
    "mem.edit": "Edit", "mem.save": "Save", "mem.edited": "Changed.", "mem.erase": "Erase", "mem.erased": "Erased.",
    "mem.erase_all": "Erase all", "mem.erase_all_confirm": "Click again to erase all {0} facts for good",
    "mem.erased_all": "Everything erased: the file and its index are gone.", "mem.day": "Told", "mem.fact": "Fact",
    "mem.count": "{0} facts", "mem.none": "Nobody has told the assistant anything to keep yet. /remember <fact> in a chat keeps one.",
    "mem.empty": "Nothing kept for this owner.", "mem.off": "Memory is switched off (memory.enabled in config.yaml): facts are kept but not used.",
    "ob.state": "State", "ob.all": "All states", "ob.refresh": "Refresh", "ob.time": "Stored", "ob.chat": "Chat",
    "ob.text": "Message", "ob.to": "to", "ob.attempts": "attempts: {0}", "ob.next": "next try {0}", "ob.files": "{0} file(s)",
    "ob.retry": "Retry", "ob.retried": "Queued again: it goes out within seconds.", "ob.trace": "Trace",
    "ob.empty": "Nothing sent yet. Replies sent later (enterprise_im with reply_url), context.send in skills and POST /api/v1/send show up here.",
    "state.waiting": "waiting for its reply", "state.queued": "queued", "state.sending": "sending", "state.sent": "sent", "state.failed": "failed",
    "origin.reply": "reply", "origin.skill": "from a skill", "origin.api": "from POST /api/v1/send",
    "step.sent": "sent", "step.retry": "will retry", "step.failed": "failed", "step.interrupted": "cut off by a stop",
    "step.again": "queued again", "ss.deliveries": "Deliveries",
    "ov.msgs": "Messages / min", "ov.latency": "Latency (end to end)", "ov.model_latency": "Latency (model)",
    "ov.errors": "Error rate", "ov.inflight": "In flight", "ov.conns": "Connections",
    "ov.by_channel": "By channel", "ov.by_model": "By model", "ov.tokens": "Token usage",
    "ov.days": "Last {0} days", "ov.csv": "Export CSV", "ov.window": "Figures over the last {0} s, updated every 2 s",
    "ov.no_traffic": "No messages in the last minute. Send one from Chat to see the charts move.",
    "ov.no_tokens": "No model tokens recorded yet. Chat with the assistant; each answer's prompt and completion tokens show up here per day.",
    "ov.stats_error": "Cannot read /api/v1/stats: {0}",
    "ov.time": "Time", "ov.all": "all", "ov.err_messages": "messages", "ov.err_calls": "model calls", "sk.passages": "{0} passages",
    "ov.channels": "Channels", "ov.status": "Status", "ov.connected": "running", "ov.retrying": "retrying", "ov.stopped": "stopped", "ov.stale": "stale", "ov.connecting": "connecting",
    "col.channel": "Channel", "col.model": "Model", "col.count": "Messages", "col.per_min": "Per min",
    "col.errors": "Errors", "col.day": "Day", "col.prompt": "Prompt", "col.completion": "Completion",
    "col.p50": "p50", "col.p95": "p95", "col.p99": "p99", "col.calls": "Model calls",
    "logs.source": "File", "logs.level": "Level", "logs.keyword": "Keyword", "logs.pause": "Pause", "logs.resume": "Resume",
    "logs.older": "Load older lines", "logs.live": "live", "logs.paused": "paused", "logs.connecting": "connecting…",
    "logs.empty": "No log lines match. Clear the filter, or send a message from Chat and watch it arrive.",
    "logs.for": "Log lines of message {0}", "logs.back": "Back to the live tail", "logs.all": "all levels",
    "logs.start": "The start of the file was reached.",
    "ss.search": "Search text, sender or msg_id", "ss.text": "Text", "ss.sender": "Sender", "ss.msg_id": "msg_id",
    "ss.sessions": "Sessions", "ss.messages": "Messages", "ss.find": "Search",
    "ss.count": "{0} messages", "ss.count_one": "1 message",
    "ss.empty": "No sessions yet. Messages from any channel open one; try the Chat page.",
    "ss.no_match": "Nothing matches. Try fewer words, or search by msg_id.",
    "ss.replay": "Replay", "ss.trace": "Trace", "ss.screenshot": "open the screenshot", "ss.given": "What the model was given", "ss.logs": "Show its log lines",
    "ss.no_model": "No model was called for this message (a command or skill answered).",
    "ss.tokens": "{0} prompt + {1} completion tokens ({2})", "ss.reply": "Reply", "ss.pick": "Pick a session or search for a message to replay it.",
    "ss.prev": "Previous", "ss.next": "Next message",
    "ss.route": "Route", "ss.status": "Status", "ss.total": "{0} ms in all",
    "status.answered": "answered", "status.failed": "failed", "status.received": "received",
    "cfg.title": "config.yaml", "cfg.check": "Check", "cfg.apply": "Apply", "cfg.ok": "Valid: Apply writes it and the gateway takes it within a second.",
    "cfg.problems": "{0} problem(s): fix them to apply", "cfg.applied": "Applied as version {0}.", "cfg.refused": "The gateway refused it and keeps the last good config: {0}",
    "cfg.unchanged": "Nothing changed.", "cfg.versions": "Versions", "cfg.rollback": "Roll back", "cfg.view": "Diff",
    "cfg.no_versions": "No versions yet. Each Apply is kept here with its diff, so you can roll back in one click.",
    "cfg.running_error": "The file on disk is refused by the gateway (the last good config runs): {0}",
    "cfg.line": "line {0}", "cfg.confirm": "Roll back to version {0}?",
    "sk.skills": "Loaded skills", "sk.knowledge": "Knowledge files", "sk.try": "Try a question", "sk.ask": "Search",
    "sk.edit": "Edit", "sk.save": "Save", "sk.saved": "Saved and loaded.", "sk.load_error": "Saved, but it failed to load (the last good version keeps running): {0}",
    "sk.no_skills": "No skills loaded. Put a .py skill in skills/ (see skills/README) or create one here.",
    "sk.no_knowledge": "No knowledge files. Add .md, .csv or .txt files to knowledge/ or create one here.",
    "sk.no_hits": "No passage matches that question.", "sk.new": "New file path (e.g. skills/hello.py)",
    "sk.open": "Open", "sk.ok": "loaded", "sk.error": "error", "sk.intent": "Intent", "sk.command": "Command", "sk.source": "File", "sk.kind": "Kind",
    "mcp.title": "Tool servers (MCP)", "mcp.server": "Server", "mcp.state": "State", "mcp.tools": "Tools",
    "mcp.offered": "Offered to the model", "mcp.restarts": "Restarts", "mcp.running": "running", "mcp.starting": "starting",
    "mcp.failed": "failed", "mcp.stopped": "stopped", "mcp.missing": "not on the server: {0}",
    "mcp.none": "No tool servers. Add them under mcp_servers: in config.yaml (see the README).",
    "sk.sandbox": "Sandbox for the model's programs", "sk.sandbox_on": "on", "sk.sandbox_off": "none: the model gets no command tool",
    "chat.placeholder": "Message the assistant", "chat.hint": "Enter sends, Shift+Enter starts a new line.", "chat.send": "Send",
    "chat.fresh": "Started a fresh conversation: the model no longer sees the earlier turns.",
    "chat.continued": "The model continues this conversation, begun {0}. New conversation starts a fresh one.",
    "chat.reset": "New conversation", "chat.connected": "connected", "chat.disconnected": "disconnected, retrying…",
    "chat.empty": "Say hello. Replies stream in as the model writes them; each one links to its trace.",
    "chat.trace": "trace",
    "err.generic": "Something went wrong: {0}", "loading": "Loading…",
  },
  zh: {
    "skip": "跳到内容", "menu": "菜单", "signout": "退出登录",
    "lang.switch": "语言：切换到英文", "lang.other": "English",
    "theme.switch": "主题：浅色、深色或跟随系统", "theme.light": "浅色", "theme.dark": "深色", "theme.system": "跟随系统",
    "signin.title": "登录控制台",
    "signin.help": "运行 `moltbot dashboard --token-gen` 并打开它给出的链接，或在此粘贴令牌。",
    "signin.token": "令牌", "signin.submit": "登录", "signin.as": "已登录：{0}",
    "nav.overview": "概览", "nav.logs": "日志", "nav.sessions": "会话", "nav.config": "配置",
    "nav.skills": "技能与知识库", "nav.chat": "对话", "nav.outbox": "发件箱", "nav.memory": "记忆", "nav.schedules": "定时",
    "sc.all": "包括已结束的", "sc.zone": "时间按 {0}", "sc.id": "编号 · 所属", "sc.next": "下次运行",
    "sc.cancel": "取消", "sc.cancelled": "已取消 {0}。", "sc.last": "上次运行：{0}",
    "scs.active": "等待中", "scs.done": "已完成", "scs.skipped": "已跳过", "scs.cancelled": "已取消", "scs.removed": "技能已移除",
    "sc.empty": "没有提醒或定时任务。在对话里设置（/remind 9:00 给妈妈打电话），或在技能里声明（@context.schedule）。",
    "origin.reminder": "提醒", "origin.schedule": "技能定时任务",
    "mem.owner": "主人", "mem.new": "要记住的事", "mem.add": "添加", "mem.added": "已记住。",
    "mem.edit": "编辑", "mem.save": "保存", "mem.edited": "已修改。", "mem.erase": "删除", "mem.erased": "已删除。",
    "mem.erase_all": "全部删除", "mem.erase_all_confirm": "再点一次，永久删除全部 {0} 条",
    "mem.erased_all": "已全部删除：文件和索引都已清除。", "mem.day": "记录日期", "mem.fact": "内容",
    "mem.count": "{0} 条", "mem.none": "还没有人让助手记住什么。在对话中发送 /remember <内容> 即可记住一条。",
    "mem.empty": "没有为这位主人记住任何内容。", "mem.off": "记忆已关闭（config.yaml 中的 memory.enabled）：内容仍保留，但不会使用。",
    "ob.state": "状态", "ob.all": "全部状态", "ob.refresh": "刷新", "ob.time": "存入时间", "ob.chat": "会话",
    "ob.text": "消息", "ob.to": "发给", "ob.attempts": "尝试 {0} 次", "ob.next": "下次尝试 {0}", "ob.files": "{0} 个文件",
    "ob.retry": "重试", "ob.retried": "已重新排队，几秒内发出。", "ob.trace": "链路",
    "ob.empty": "还没有发出的消息。稍后发送的回复（设置了 reply_url 的 enterprise_im）、技能里的 context.send 和 POST /api/v1/send 都会显示在这里。",
    "state.waiting": "等待回复", "state.queued": "排队中", "state.sending": "发送中", "state.sent": "已发送", "state.failed": "失败",
    "origin.reply": "回复", "origin.skill": "来自技能", "origin.api": "来自 POST /api/v1/send",
    "step.sent": "已发送", "step.retry": "将重试", "step.failed": "失败", "step.interrupted": "因停止而中断",
    "step.again": "重新排队", "ss.deliveries": "投递",
    "ov.msgs": "每分钟消息数", "ov.latency": "延迟（端到端）", "ov.model_latency": "延迟（模型）",
    "ov.errors": "错误率", "ov.inflight": "处理中", "ov.conns": "连接数",
    "ov.by_channel": "按渠道", "ov.by_model": "按模型", "ov.tokens": "Token 用量",
    "ov.days": "最近 {0} 天", "ov.csv": "导出 CSV", "ov.window": "最近 {0} 秒的数据，每 2 秒刷新",
    "ov.no_traffic": "最近一分钟没有消息。去“对话”页发一条，图表就会动起来。",
    "ov.no_tokens": "还没有记录模型 token。和助手对话后，每次回答的提示与生成 token 会按天显示在这里。",
    "ov.stats_error": "无法读取 /api/v1/stats：{0}",
    "ov.time": "时间", "ov.all": "全部", "ov.err_messages": "消息", "ov.err_calls": "模型调用", "sk.passages": "{0} 个段落",
    "ov.channels": "渠道", "ov.status": "状态", "ov.connected": "运行中", "ov.retrying": "重试中", "ov.stopped": "已停止", "ov.stale": "停滞", "ov.connecting": "连接中",
    "col.channel": "渠道", "col.model": "模型", "col.count": "消息", "col.per_min": "每分钟",
    "col.errors": "错误", "col.day": "日期", "col.prompt": "提示", "col.completion": "生成",
    "col.p50": "p50", "col.p95": "p95", "col.p99": "p99", "col.calls": "模型调用",
    "logs.source": "文件", "logs.level": "级别", "logs.keyword": "关键词", "logs.pause": "暂停", "logs.resume": "继续",
    "logs.older": "加载更早的日志", "logs.live": "实时", "logs.paused": "已暂停", "logs.connecting": "连接中…",
    "logs.empty": "没有匹配的日志。清除筛选，或在“对话”页发一条消息看它出现。",
    "logs.for": "消息 {0} 的日志", "logs.back": "返回实时日志", "logs.all": "全部级别",
    "logs.start": "已到文件开头。",
    "ss.search": "搜索文本、发送者或 msg_id", "ss.text": "文本", "ss.sender": "发送者", "ss.msg_id": "msg_id",
    "ss.sessions": "会话", "ss.messages": "消息", "ss.find": "搜索",
    "ss.count": "{0} 条消息", "ss.count_one": "1 条消息",
    "ss.empty": "还没有会话。任何渠道的消息都会开启会话，试试“对话”页。",
    "ss.no_match": "没有匹配项。减少关键词，或按 msg_id 搜索。",
    "ss.replay": "回放", "ss.trace": "链路", "ss.screenshot": "打开截图", "ss.given": "模型收到的内容", "ss.logs": "查看它的日志",
    "ss.no_model": "这条消息没有调用模型（由命令或技能回答）。",
    "ss.tokens": "提示 {0} + 生成 {1} token（{2}）", "ss.reply": "回复", "ss.pick": "选择一个会话或搜索一条消息来回放。",
    "ss.prev": "上一条", "ss.next": "下一条消息",
    "ss.route": "路由", "ss.status": "状态", "ss.total": "共 {0} 毫秒",
    "status.answered": "已回答", "status.failed": "失败", "status.received": "已收到",
    "cfg.title": "config.yaml", "cfg.check": "检查", "cfg.apply": "应用", "cfg.ok": "有效：应用后写入文件，网关在一秒内生效。",
    "cfg.problems": "{0} 个问题：修正后才能应用", "cfg.applied": "已应用，版本 {0}。", "cfg.refused": "网关拒绝了它，继续使用上一个有效配置：{0}",
    "cfg.unchanged": "没有变化。", "cfg.versions": "版本", "cfg.rollback": "回滚", "cfg.view": "差异",
    "cfg.no_versions": "还没有版本。每次应用都会连同差异保存在这里，一键即可回滚。",
    "cfg.running_error": "磁盘上的文件被网关拒绝（仍在运行上一个有效配置）：{0}",
    "cfg.line": "第 {0} 行", "cfg.confirm": "回滚到版本 {0}？",
    "sk.skills": "已加载的技能", "sk.knowledge": "知识库文件", "sk.try": "试问一个问题", "sk.ask": "搜索",
    "sk.edit": "编辑", "sk.save": "保存", "sk.saved": "已保存并加载。", "sk.load_error": "已保存，但加载失败（上一个有效版本继续运行）：{0}",
    "sk.no_skills": "没有加载技能。把 .py 技能放进 skills/，或在这里新建一个。",
    "sk.no_knowledge": "没有知识库文件。把 .md、.csv 或 .txt 文件放进 knowledge/，或在这里新建一个。",
    "sk.no_hits": "没有段落匹配这个问题。", "sk.new": "新文件路径（如 skills/hello.py）",
    "sk.open": "打开", "sk.ok": "已加载", "sk.error": "错误", "sk.intent": "意图", "sk.command": "命令", "sk.source": "文件", "sk.kind": "类型",
    "mcp.title": "工具服务器（MCP）", "mcp.server": "服务器", "mcp.state": "状态", "mcp.tools": "工具",
    "mcp.offered": "提供给模型", "mcp.restarts": "重启次数", "mcp.running": "运行中", "mcp.starting": "启动中",
    "mcp.failed": "失败", "mcp.stopped": "已停止", "mcp.missing": "服务器上没有：{0}",
    "mcp.none": "没有工具服务器。在 config.yaml 的 mcp_servers: 下添加（见 README）。",
    "sk.sandbox": "模型所运行程序的沙箱", "sk.sandbox_on": "已启用", "sk.sandbox_off": "无：模型不会获得 command 工具",
    "chat.placeholder": "给助手发消息", "chat.hint": "回车发送，Shift+回车换行。", "chat.send": "发送",
    "chat.fresh": "已开始新对话：模型不再看到之前的内容。",
    "chat.continued": "模型会接着这段对话（始于 {0}）。点“新对话”重新开始。",
    "chat.reset": "新对话", "chat.connected": "已连接", "chat.disconnected": "已断开，正在重连…",
    "chat.empty": "打个招呼吧。回复会随模型生成逐字显示，每条都能打开它的链路。",
    "chat.trace": "链路",
    "err.generic": "出错了：{0}", "loading": "加载中…",
  },
};

function pick() {
  const saved = localStorage.getItem("moltbot.lang");
  if (saved && STRINGS[saved]) return saved;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
}

let lang = pick();

export function language() { return lang; }

export function setLanguage(next) {
  lang = next;
  localStorage.setItem("moltbot.lang", next);
}

// Keys asked for in a language that lacks them (shown in English, or raw): the layout test
// reads this list and fails on any entry.
const missing = new Set();

export function missingKeys() { return [...missing]; }

// A copy of one language's strings, for checking a page for text left untranslated.
export function dictionary(which) { return {...STRINGS[which]}; }

export function t(key, ...args) {
  if (STRINGS[lang][key] === undefined) missing.add(`${lang}:${key}`);
  const text = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\d)\}/g, (_, i) => String(args[Number(i)] ?? ""));
}

// The shell's static strings carry data-i18n (text) or data-i18n-title (tooltip) attributes.
export function translate(root = document) {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  root.querySelectorAll("[data-i18n-title]").forEach((el) => {
    el.title = t(el.dataset.i18nTitle);
    el.setAttribute("aria-label", el.title);
  });
}
