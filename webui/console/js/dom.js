import {language} from "./i18n.js";

// A tiny element builder: h("div.card", {onclick}, child, "text"). No innerHTML anywhere,
// so nothing a message or a log line holds can ever run as markup.
export function h(tag, props = {}, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && key !== "list") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// A line may break after each `mark` of a long name (the dots of channels.enterprise_im.enabled,
// the slashes of a path) and nowhere else.
export function breakable(text, mark) {
  return text.split(mark).flatMap((part, i, all) => (i < all.length - 1 ? [part, mark, h("wbr")] : [part]));
}

export function empty(text, action) {
  return h("div.empty", {}, h("p", {}, text), action || null);
}

// Dates and times follow the console's language (not the browser's), 24-hour in both.
function locale() { return language() === "zh" ? "zh-CN" : "en-GB"; }

export function fmtTime(seconds) {
  return new Date(seconds * 1000).toLocaleString(locale(), {dateStyle: "medium", timeStyle: "short"});
}

export function fmtClock(seconds, withSeconds = false) {
  return new Date(seconds * 1000).toLocaleTimeString(locale(), {hour: "2-digit", minute: "2-digit",
    second: withSeconds ? "2-digit" : undefined, hour12: false});
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
}
