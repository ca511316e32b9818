"""Programs that execute other programs or read and write files by design, and how the
model's command tool keeps them from doing so: one table, consulted only for the model.

Why a table: `sed`, `find`, `tar`, `git`, `sort` are ordinary text programs, and each has a
documented way to run a command or to open a file that no path check can see (a sed script's
`e`/`w`/`r`, `find -exec`, `tar --checkpoint-action=exec=`, a git alias, `sort -o`). GTFOBins
(gtfobins.github.io) is the reference list of such functions; this table covers the programs
an owner plausibly lists in `tools.allowed_commands`. The sandbox (`sandbox.py`) is the wall:
the table is defence in depth, and it makes a refusal say what happened instead of a program
failing on a file it cannot see. The owner's skills (`context.tool`) do not consult it.

What a rule can do, checked on every argument (GNU getopt takes options after operands too):
- refuse the program outright: shells, interpreters and wrappers run anything;
- refuse long options *and every abbreviation of them* (`--files0=` is `--files0-from=` to
  getopt, `--checkpoint-a` is `--checkpoint-action`);
- refuse short option letters, also inside a cluster (`-rno/x` holds `-o`), up to the first
  letter that takes a value;
- refuse words wherever they appear (`find`'s `-exec`, `-fprint`, ...);
- prepend arguments that switch the program's own guard on (`sed --sandbox`, `gawk
  --sandbox`, `tar --force-local`);
- name `key=value` operands whose value is a path, for the path check (`dd if=`, `of=`);
- a check of its own (git: a short list of read-only subcommands, no `-c`), and a rewrite
  (git: command-line settings that keep the repository's own config from naming programs).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.tools.base import ToolRefused

_RUNS_ANYTHING = (
    # shells and interpreters
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "csh", "tcsh", "ash", "busybox",
    "toybox", "python", "python2", "python3", "perl", "ruby", "irb", "node", "nodejs", "deno",
    "bun", "php", "lua", "luajit", "tclsh", "wish", "expect", "Rscript", "R", "julia", "guile",
    "awk", "mawk", "nawk", "original-awk", "busybox-awk", "m4", "dc", "gdb", "lldb",
    # wrappers that run the program named in their arguments
    "env", "xargs", "sudo", "doas", "su", "runuser", "pkexec", "nice", "ionice", "timeout",
    "nohup", "stdbuf", "setsid", "chroot", "unshare", "nsenter", "flock", "script", "watch",
    "parallel", "time", "taskset", "chrt", "strace", "ltrace", "valgrind", "systemd-run", "at",
    "batch", "crontab", "ld.so", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1",
    # programs with a command prompt, an editor's shell escape, or plugins/hooks
    "vi", "vim", "nvim", "view", "vimdiff", "ex", "ed", "emacs", "nano", "pico", "less", "more",
    "most", "pg", "man", "screen", "tmux", "make", "cmake", "ninja", "gcc", "cc", "g++", "c++",
    "clang", "ld", "ssh", "scp", "sftp", "ssh-keygen", "openssl", "sqlite3", "mysql", "psql",
    "patch", "docker", "podman", "kubectl", "socat", "nc", "ncat", "netcat", "telnet", "ftp",
)


@dataclass(frozen=True)
class ProgramRule:
    """How the model may use one program; see the module docstring for each field."""

    why: str
    runs_anything: bool = False
    options: tuple[str, ...] = ()
    short: str = ""
    takes_value: str = ""
    words: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    prepend: tuple[str, ...] = ()
    path_operands: tuple[str, ...] = ()
    old_style: bool = False  # tar: a first argument without "-" is a cluster of letters
    exact: tuple[str, ...] = ()  # harmless long options that getopt takes before a prefix
    check: Callable[[Sequence[str]], str | None] | None = field(default=None, compare=False)
    rewrite: Callable[[list[str]], list[str]] | None = field(default=None, compare=False)


_GIT_READ = frozenset((
    "status", "log", "show", "diff", "grep", "blame", "ls-files", "ls-tree", "cat-file",
    "rev-parse", "rev-list", "shortlog", "describe", "diff-tree", "diff-files", "diff-index",
    "whatchanged", "count-objects", "version", "branch", "tag", "name-rev", "for-each-ref",
    "show-ref", "merge-base",
))
_GIT_GLOBAL_FLAGS = frozenset((
    "--no-pager", "-P", "--no-replace-objects", "--literal-pathspecs", "--glob-pathspecs",
    "--noglob-pathspecs", "--icase-pathspecs", "--no-optional-locks", "--bare",
))
_GIT_GLOBAL_VALUES = ("--git-dir=", "--work-tree=")


def _check_git(argv: Sequence[str]) -> str | None:
    """git runs aliases, hooks, pagers, diff drivers and `-c` settings: the model gets a few
    read-only subcommands, with global options that set no program."""
    i = 1
    while i < len(argv) and argv[i].startswith("-"):
        arg = argv[i]
        if arg == "-C":
            i += 2
            continue
        if arg not in _GIT_GLOBAL_FLAGS and not arg.startswith(_GIT_GLOBAL_VALUES):
            return (f"the git option {arg!r} can set configuration or name a program to run; "
                    f"the model may use {', '.join(sorted(_GIT_GLOBAL_FLAGS))}, -C, "
                    "--git-dir= and --work-tree= before the subcommand")
        i += 1
    if i >= len(argv):
        return "name a subcommand, e.g. git log"
    if argv[i] not in _GIT_READ:
        return (f"git {argv[i]!r} is not one of the read-only subcommands the model may run "
                f"({', '.join(sorted(_GIT_READ))}); others (and aliases) can run programs "
                "or change configuration")
    return None


# A repository's own config (which the model can write in its folders) names programs too:
# core.fsmonitor runs on `git status`, diff.external and textconv drivers on `git diff`.
_GIT_OVERRIDES = ("-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null",
                  "-c", "core.pager=cat", "--no-pager")
_GIT_NO_DRIVERS = {"diff": ("--no-ext-diff", "--no-textconv"),
                   "log": ("--no-ext-diff", "--no-textconv"),
                   "show": ("--no-ext-diff", "--no-textconv"),
                   "whatchanged": ("--no-ext-diff", "--no-textconv"),
                   "grep": ("--no-textconv",), "blame": ("--no-textconv",)}


def _rewrite_git(argv: list[str]) -> list[str]:
    """Settings on the command line win over the repository's: no fsmonitor, hooks, pager,
    external diff or textconv program runs."""
    i = 1
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] == "-C" else 1
    return [argv[0], *_GIT_OVERRIDES, *argv[1:i + 1], *_GIT_NO_DRIVERS.get(argv[i], ()),
            *argv[i + 1:]]


_GIT_OPTIONS = ("--ext-diff", "--textconv", "--open-files-in-pager", "--upload-pack",
                "--exec", "--config-env", "--exec-path", "--paginate")
_VERSIONED = ("python", "pypy", "perl", "ruby", "php", "lua", "node")
_FILE_LIST = ("--files0-from",)  # names read from a file: the path check cannot see them

RULES: dict[str, ProgramRule] = {
    **{name: ProgramRule("it runs other programs or code by design", runs_anything=True)
       for name in _RUNS_ANYTHING},
    "sed": ProgramRule("sed's e, r, w commands and s///e run programs and open files; sed "
                       "runs with --sandbox, which refuses them", prepend=("--sandbox",)),
    "gawk": ProgramRule("gawk's system(), pipes and redirections run programs and open "
                        "files; gawk runs with --sandbox, which refuses them",
                        prepend=("--sandbox",), options=("--load", "--exec"), short="lE",
                        takes_value="fvF"),
    "find": ProgramRule("find's -exec family runs programs, its -fprint family and -delete "
                        "write files, and -files0-from reads names from a file",
                        words=("-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprint0",
                               "-fprintf", "-fls", "-delete", "-files0-from")),
    "tar": ProgramRule("tar runs programs through checkpoint actions, compressors, scripts, "
                       "remote shells and --to-command, and reads names from files",
                       options=("--checkpoint-action", "--to-command",
                                "--use-compress-program", "--info-script",
                                "--new-volume-script", "--rsh-command", "--rmt-command",
                                "--files-from", "--absolute-names", "--index-file"),
                       short="IFTP", takes_value="fCbgHKLNVXg", prepend=("--force-local",),
                       old_style=True, exact=("--checkpoint",)),
    "sort": ProgramRule("sort's -o writes a file and --compress-program runs one; write to "
                        "stdout and save it with the files tool",
                        options=("--output", "--compress-program", *_FILE_LIST), short="o",
                        takes_value="kStT"),
    "wc": ProgramRule("wc reads file names from a file", options=_FILE_LIST),
    "du": ProgramRule("du reads file names from a file", options=("--files0-from",
                                                                  "--exclude-from")),
    "git": ProgramRule("git runs aliases, hooks, pagers and configured programs",
                       options=_GIT_OPTIONS, prefixes=("-O",), check=_check_git,
                       rewrite=_rewrite_git),
    "split": ProgramRule("split --filter runs a program", options=("--filter",)),
    "zip": ProgramRule("zip -TT and --unzip-command run a program",
                       options=("--unzip-command",), prefixes=("-TT",)),
    "rsync": ProgramRule("rsync -e and --rsync-path run programs",
                         options=("--rsh", "--rsync-path", "--files-from"), short="e"),
    "pandoc": ProgramRule("pandoc filters are programs", options=("--filter", "--lua-filter"),
                          short="FL"),
    "dd": ProgramRule("dd names its files as if= and of=", path_operands=("if=", "of=")),
}


def rule_for(program: str) -> ProgramRule | None:
    """The rule for an executable path: by its real name first, through symlinks (`awk` ->
    `/etc/alternatives/awk` -> `mawk`, a `sed` that is busybox), then by the name it was
    found under (`vi` -> `vim.basic`)."""
    real, name = os.path.basename(os.path.realpath(program)), os.path.basename(program)
    if real in RULES:
        return RULES[real]
    if real.startswith(_VERSIONED):  # python3.11, perl5.36, ...
        return RULES["python"]
    return RULES.get(name)


def check_argv(program: str, argv: Sequence[str]) -> list[str]:
    """The argv the model may run (with any guard arguments added), or ToolRefused.

    `program` is the resolved executable, `argv` what the model asked for (argv[0] as it
    wrote it). Also refuses, for every program, `@file` arguments (getopt wrappers read
    arguments from the file) and the `--files0-from` family."""
    name = argv[0]
    rule = rule_for(program)
    if rule is not None and rule.runs_anything:
        raise ToolRefused(f"command: refused {name!r} for the model: {rule.why}, so the "
                          "model's command tool never runs it (the owner's skills still may, "
                          "through context.tool)")
    rule = rule or ProgramRule("")
    for position, arg in enumerate(argv[1:], 1):
        problem = _check_arg(rule, arg, first=position == 1)
        if problem:
            raise _refused(name, arg, problem)
    if rule.check is not None:
        problem = rule.check(argv)
        if problem:
            raise _refused(name, " ".join(argv[1:3]), problem)
    checked = [argv[0], *rule.prepend, *argv[1:]]
    return rule.rewrite(checked) if rule.rewrite is not None else checked


def path_values(program: str, argv: Sequence[str]) -> list[str]:
    """Paths hidden in `key=value` operands (dd's if=/of=), for the path check."""
    rule = rule_for(program)
    if rule is None or not rule.path_operands:
        return []
    return [arg.split("=", 1)[1] for arg in argv[1:] if arg.startswith(rule.path_operands)]


def _check_arg(rule: ProgramRule, arg: str, *, first: bool) -> str | None:
    if arg.startswith("@"):
        return "an @file argument makes a program read its arguments from a file"
    if arg.startswith("--"):
        given = arg[2:].partition("=")[0]
        if f"--{given}" in rule.exact:
            return None
        for option in (*_FILE_LIST, *rule.options):
            if given and option[2:].startswith(given):
                shown = "" if given == option[2:] else f" (an abbreviation of {option})"
                why = ("it makes the program read file names from a file, which the path "
                       "check cannot see" if option in _FILE_LIST else rule.why)
                return why + shown
        return None
    if arg in rule.words or (rule.prefixes and arg.startswith(rule.prefixes)):
        return rule.why
    cluster = arg[1:] if arg.startswith("-") else (arg if first and rule.old_style else "")
    for letter in cluster:
        if letter in rule.short:
            return f"{rule.why} (-{letter})"
        if letter in rule.takes_value:
            break
    return None


def _refused(program: str, arg: str, why: str) -> ToolRefused:
    return ToolRefused(f"command: refused {program} {arg!r} for the model: {why}")
