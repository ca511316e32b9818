"""How long the knowledge index takes to build and to answer, at 10,000 mixed zh/en passages.

Run: python bench/bench_knowledge.py [passages] [queries]. Prints numbers, asserts nothing.
The corpus is generated from a fixed seed, so runs are comparable on one machine.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.knowledge import KnowledgeIndex, Passage, tokenize

ZH_VOCABULARY = (
    "网关 安装 启动 端口 令牌 技能 知识库 日志 模型 配置 服务器 控制台 消息 会话 用户 机器人 "
    "验证码 陌生人 黑名单 限流 请求 回复 超时 升级 卸载 备份 数据库 目录 文件 权限 证书 代理 "
    "容器 镜像 集群 负载 内存 显卡 驱动 缓存 索引 检索 段落 标题 表格 编码 错误 告警 邮件 "
    "企业 微信 钉钉 飞书 接口 插件 脚本 命令 参数 环境 变量 密钥 加密 传输 延迟 吞吐 并发 "
    "连接 重启 停止 状态 监控 指标 图表 实时 历史 记录 导出 导入 同步 异步 队列 任务 定时"
)
ZH_GLUE_WORDS = "的 了 在 和 需要 可以 会 将 把 通过 如果 然后 已经 默认 自动 手动 重新"
EN_VOCABULARY = (
    "gateway install start port token skill knowledge log model config server console "
    "message session user bot code stranger blocklist limit request reply timeout upgrade "
    "backup database folder file permission certificate proxy container image cluster load "
    "memory driver cache index search passage heading table encoding error alert email "
    "webhook plugin script command parameter environment variable secret encryption latency "
    "throughput connection restart stop status monitor metric chart history export import "
    "queue task schedule channel telegram websocket mqtt keyring workspace"
)
EN_GLUE_WORDS = "the a to of and is can will when if then with for your by default"
ZH_WORDS, ZH_GLUE = ZH_VOCABULARY.split(), ZH_GLUE_WORDS.split()
EN_WORDS, EN_GLUE = EN_VOCABULARY.split(), EN_GLUE_WORDS.split()


def make_zh(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randint(3, 8)):
        words = [rng.choice(ZH_WORDS if rng.random() < 0.7 else ZH_GLUE)
                 for _ in range(rng.randint(5, 12))]
        sentences.append("".join(words) + rng.choice("。，！？"))
    return "".join(sentences)


def make_en(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randint(3, 8)):
        words = [rng.choice(EN_WORDS if rng.random() < 0.6 else EN_GLUE)
                 for _ in range(rng.randint(6, 14))]
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


def make_passages(count: int, rng: random.Random) -> list[Passage]:
    passages = []
    for n in range(count):
        zh = n % 2 == 0
        title = (f"常见问题 > {rng.choice(ZH_WORDS)}{rng.choice(ZH_WORDS)}" if zh
                 else f"FAQ > {rng.choice(EN_WORDS)} {rng.choice(EN_WORDS)}")
        body = make_zh(rng) if zh else make_en(rng)
        passages.append(Passage(f"## {title.split(' > ')[1]}\n{body}", f"doc{n // 50}.md",
                                title, line=n % 50 + 1))
    return passages


def make_questions(count: int, rng: random.Random) -> list[str]:
    zh = [f"{rng.choice(ZH_WORDS)}{rng.choice(ZH_GLUE)}{rng.choice(ZH_WORDS)}怎么办？"
          for _ in range(count // 2)]
    en = [f"How do I {rng.choice(EN_WORDS)} the {rng.choice(EN_WORDS)} {rng.choice(EN_WORDS)}?"
          for _ in range(count - count // 2)]
    questions = zh + en
    rng.shuffle(questions)
    return questions


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(passage_count: int = 10_000, query_count: int = 1_000) -> None:
    rng = random.Random(42)
    passages = make_passages(passage_count, rng)
    questions = make_questions(query_count, rng)
    chars = sum(len(p.text) for p in passages)

    started = time.perf_counter()
    tokenize("预热 jieba 词典 warm up")
    print(f"jieba dictionary load:      {time.perf_counter() - started:8.3f} s")

    started = time.perf_counter()
    token_count = sum(len(tokenize(p.text)) for p in passages)
    tokenize_s = time.perf_counter() - started

    started = time.perf_counter()
    index = KnowledgeIndex(passages)
    build_s = time.perf_counter() - started
    print(f"corpus:                     {passage_count} passages, {chars / 1e6:.2f} M chars,"
          f" {token_count / 1e6:.2f} M tokens")
    print(f"tokenize only:              {tokenize_s:8.3f} s")
    print(f"index build (incl. tokenize): {build_s:6.3f} s")

    latencies: list[float] = []
    found = 0
    for question in questions:
        started = time.perf_counter()
        hits = index.find(question, k=3)
        latencies.append((time.perf_counter() - started) * 1000)
        found += bool(hits)
    print(f"search over {query_count} queries:  p50 {statistics.median(latencies):.3f} ms,"
          f" p99 {percentile(latencies, 0.99):.3f} ms, max {max(latencies):.3f} ms"
          f" ({found} answered)")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
