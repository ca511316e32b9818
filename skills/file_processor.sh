#!/bin/sh
# moltbot: intent=file_process
# moltbot: command=/wc
# moltbot: keywords=word count, 字数
# moltbot: description=Count the lines, words and characters of a file in the workspace
# moltbot: timeout=10
#
# A script skill: any executable file in skills/ with a `# moltbot:` header like the one above.
# The message arrives on stdin as JSON ({"text": ..., "id": ..., "chat": ...}); whatever the
# script prints is the reply. The working folder is the workspace (~/ai-gateway).
#
# Try it:  /wc knowledge/faq.md   or   字数 knowledge/faq.md
set -eu

# Take the message text out of the JSON (python3 is there wherever the gateway runs; no jq).
# The router removes `/wc` itself; a keyword such as "word count" stays in the text, so drop it.
path=$(python3 -c '
import json, sys
text = str(json.load(sys.stdin).get("text") or "").strip()
for prefix in ("/wc", "word count", "字数"):
    if text.lower().startswith(prefix):
        text = text[len(prefix):].lstrip(" :：")
        break
print(text.splitlines()[0].strip() if text else "")
')

if [ -z "$path" ]; then
    echo "usage: /wc <file in the workspace>, e.g. /wc knowledge/faq.md"
    exit 0
fi

# Only files inside the workspace: no absolute paths, no way up with "..".
case "$path" in
    /*)
        echo "refused: give a path inside the workspace, e.g. knowledge/faq.md, not $path"
        exit 0 ;;
esac
case "/$path/" in
    */../*)
        echo "refused: \"..\" is not allowed in the path; give a path inside the workspace"
        exit 0 ;;
esac
if [ ! -f "$path" ]; then
    echo "no such file in the workspace: $path"
    exit 0
fi
# A symlink inside the workspace may still lead out of it: compare where it really is.
real=$(realpath -- "$path")
root=$(realpath -- "${MOLTBOT_HOME:-.}")
case "$real/" in
    "$root"/*) ;;
    *)
        echo "refused: $path leads outside the workspace (it is a link to $real)"
        exit 0 ;;
esac

# Reading through "<" keeps a file name starting with "-" from being taken as an option.
lines=$(wc -l < "$path")
words=$(wc -w < "$path")
chars=$(wc -m < "$path")
echo "$path: $((lines)) lines, $((words)) words, $((chars)) characters"
