// The console shell: sign-in, the sidebar router (#/page/arg), theme and language switches.
import {api} from "./api.js";
import {h} from "./dom.js";
import {language, setLanguage, t, translate} from "./i18n.js";
import * as overview from "./pages/overview.js";
import * as logs from "./pages/logs.js";
import * as sessions from "./pages/sessions.js";
import * as config from "./pages/config.js";
import * as skills from "./pages/skills.js";
import * as chat from "./pages/chat.js";
import * as outbox from "./pages/outbox.js";
import * as memory from "./pages/memory.js";

const PAGES = {overview, logs, sessions, outbox, config, skills, chat, memory};
const $ = (id) => document.getElementById(id);
let cleanup = null;
let principal = ""; // who is signed in, shown in the sidebar in the current language

// -- theme: system by default; the switch cycles system -> light -> dark ------------------
const THEMES = ["system", "light", "dark"];
function applyTheme() {
  const chosen = localStorage.getItem("moltbot.theme") || "system";
  const dark = chosen === "dark" || (chosen === "system" && matchMedia("(prefers-color-scheme: dark)").matches);
  document.documentElement.dataset.theme = dark ? "dark" : "light";
  $("theme").replaceChildren("◐", h("span.label", {}, ` ${t(`theme.${chosen}`)}`)); // a phone shows the icon alone
  window.dispatchEvent(new CustomEvent("moltbot:theme"));
}

// -- sign-in: a #token= or #code= link, or the form ----------------------------------------
async function login(body) {
  await api("/api/v1/login", {json: body});
}

function fromFragment() {
  const m = location.hash.match(/(?:^#|&)(token|code)=([^&]+)/);
  if (!m) return null;
  history.replaceState(null, "", location.pathname + "#/overview"); // the secret leaves the address bar
  return {[m[1]]: decodeURIComponent(m[2])};
}

function showSignIn(message = "") {
  if (cleanup) { cleanup(); cleanup = null; }
  $("shell").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message;
  $("signin-token").focus();
}

async function showShell() {
  principal = (await api("/api/v1/whoami")).principal;
  $("whoami").textContent = t("signin.as", principal);
  $("signin").hidden = true;
  $("shell").hidden = false;
  route();
}

// -- router --------------------------------------------------------------------------------
function route() {
  if ($("shell").hidden) return;
  const [name, ...args] = (location.hash.replace(/^#\/?/, "") || "overview").split("/");
  const page = PAGES[name] ? name : "overview";
  if (cleanup) { cleanup(); cleanup = null; }
  document.querySelectorAll("nav a").forEach((a) => {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  $("page-title").textContent = t(`nav.${page}`);
  document.title = `${t(`nav.${page}`)} · Moltbot`;
  const main = $("main");
  main.replaceChildren();
  main.dataset.page = page;
  cleanup = PAGES[page].mount(main, args.map(decodeURIComponent)) || null;
  setMenu(false);
}

// the sidebar slides over the page on a phone; the scrim behind it closes it
function setMenu(open) {
  $("sidebar").classList.toggle("open", open);
  $("scrim").hidden = !open;
  $("menu").setAttribute("aria-expanded", String(open));
}

function relabel() {
  translate();
  $("lang").textContent = t("lang.other");
  if (principal) $("whoami").textContent = t("signin.as", principal);
  applyTheme();
  route();
}

$("lang").addEventListener("click", () => { setLanguage(language() === "zh" ? "en" : "zh"); relabel(); });
$("theme").addEventListener("click", () => {
  const now = localStorage.getItem("moltbot.theme") || "system";
  localStorage.setItem("moltbot.theme", THEMES[(THEMES.indexOf(now) + 1) % THEMES.length]);
  applyTheme();
});
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);
$("menu").addEventListener("click", () => setMenu(!$("sidebar").classList.contains("open")));
$("scrim").addEventListener("click", () => setMenu(false));
// two ways out: the top bar's button, and on a phone (no room there) the one in the menu
for (const id of ["signout", "signout-menu"]) {
  $(id).addEventListener("click", async () => {
    await api("/api/v1/logout", {json: {}});
    principal = "";
    showSignIn();
  });
}
$("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try { await login({token: $("signin-token").value.trim()}); $("signin-token").value = ""; await showShell(); }
  catch (err) { $("signin-error").textContent = err.message; }
});
window.addEventListener("hashchange", route);
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && $("sidebar").classList.contains("open")) {
    setMenu(false);
    $("menu").focus();
  }
});
window.addEventListener("moltbot:signed-out", () => showSignIn());

(async () => {
  translate();
  $("lang").textContent = t("lang.other");
  applyTheme();
  const secret = fromFragment();
  let problem = "";
  if (secret) { try { await login(secret); } catch (err) { problem = err.message; } }
  try { await showShell(); } catch { showSignIn(problem); }
})();
