// The dashboard in headless Chromium: sign in with a token, check that the chart and the live
// list render, change the pickers, ask the test (over stdout/stdin) to record an action and
// see it appear with its moderator's name, then save a screenshot.
//
// Env: PAWTROPOLIS_URL, PAWTROPOLIS_TOKEN, PAWTROPOLIS_GUILD_ID, PAWTROPOLIS_CHROMIUM,
// PAWTROPOLIS_SCREENSHOT (PNG path), PAWTROPOLIS_KNOWN_NAMES (names the fake Discord knows),
// PAWTROPOLIS_LEGACY_ACTOR (an actor id that is not a snowflake). Protocol: prints `insert`;
// the test records a row by the legacy actor, then one whose actor id has spaces around it, and
// answers `<id> <name>` for the second, with ` also <id>` when it also committed a row it held
// open while the page loaded.
// With PAWTROPOLIS_LOGIN_AS=<display name> it signs in through the Discord login instead
// (against the test's fake Discord), checks the page as that user, and signs out.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`set ${name}`);
  return v;
};
const base = env("PAWTROPOLIS_URL");
const loginAs = process.env.PAWTROPOLIS_LOGIN_AS;
const token = loginAs ? "" : env("PAWTROPOLIS_TOKEN");
const guild = env("PAWTROPOLIS_GUILD_ID");
const screenshot = loginAs ? "" : env("PAWTROPOLIS_SCREENSHOT");
const lines = createInterface({ input: process.stdin });
const input = lines[Symbol.asyncIterator]();
// Generous: CI runs this beside the rest of the suite on two cores.
const TIMEOUT = 45_000;

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

const browser = await chromium.launch({
  executablePath: env("PAWTROPOLIS_CHROMIUM"),
  headless: true,
  timeout: 90_000,
  // No sandbox as root; no background traffic to Google on a closed network.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 960 } });
  page.setDefaultTimeout(TIMEOUT);
  page.setDefaultNavigationTimeout(TIMEOUT);
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  // Discord's CDN, faked like the Discord API: a coloured disc per avatar URL.
  await page.route("https://cdn.discordapp.com/**", (route) => {
    const hue = [...route.request().url()].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 360, 7);
    route.fulfill({
      contentType: "image/svg+xml",
      body: `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><circle cx="32" cy="32" r="32" fill="hsl(${hue} 60% 55%)"/><circle cx="32" cy="26" r="11" fill="#fff8"/><ellipse cx="32" cy="54" rx="18" ry="12" fill="#fff8"/></svg>`,
    });
  });

  // `/` sends the browser to the dashboard, which asks to sign in.
  await page.goto(`${base}/`);
  check(new URL(page.url()).pathname === "/dashboard/", `redirected to /dashboard/, at ${page.url()}`);
  await page.locator("#token-form").waitFor({ timeout: TIMEOUT });
  if (loginAs) {
    await loginFlow(page);
  } else {
    await tokenFlow(page);
  }
  check(errors.length === 0, `no page errors: ${errors}`);
} finally {
  lines.close();
  await browser.close();
}

// Sign in with a token: chart, pickers, list, a live action, screenshot.
async function tokenFlow(page) {
  await page.fill("#token-guild", guild);
  await page.fill("#token-secret", token);
  await page.click("#token-form button[type=submit]");

  // The chart: stacked bars and the two response-time lines.
  await page.locator("#chart svg rect.bar").first().waitFor({ timeout: TIMEOUT });
  const kinds = await page.$$eval("#chart rect.bar", (rs) => [...new Set(rs.map((r) => r.classList[1]))].sort());
  check(kinds.length === 4, `four stacked series, got ${kinds}`);
  await page.locator("#chart path.line-p50").waitFor({ state: "attached", timeout: TIMEOUT });
  await page.locator("#chart path.line-p95").waitFor({ state: "attached", timeout: TIMEOUT });
  check((await page.getAttribute("#chart svg", "data-buckets")) === "29", "7d/6h has 29 buckets");
  console.log(`ok chart: ${await page.locator("#chart rect.bar").count()} bars, series ${kinds}`);

  // The pickers redraw it.
  await page.selectOption("#window", "30d");
  await page.selectOption("#bucket", "1d");
  await page.waitForFunction(() => document.querySelector("#chart svg")?.dataset.buckets === "31", null, { timeout: TIMEOUT });
  console.log("ok pickers: 30d/1d has 31 buckets");

  // The live list: a page of actions with names and avatars.
  await page.locator("#actions li").nth(19).waitFor({ timeout: TIMEOUT });
  // Moderators Discord knows show their names (applicants it does not know, a placeholder).
  const known = env("PAWTROPOLIS_KNOWN_NAMES").split(",");
  const names = await page.$$eval("#actions li .who", (ws) => ws.map((w) => w.textContent));
  const firstName = names.find((n) => known.includes(n));
  check(firstName, `moderator names from Discord in the list: ${[...new Set(names)]}`);
  check(names.every((n) => !/^\d+$/.test(n)), `no bare ids: ${[...new Set(names)]}`);
  await page.waitForFunction(
    () => [...document.querySelectorAll("#actions li .avatar img")].filter((i) => i.complete && i.naturalWidth > 0).length >= 10,
    null,
    { timeout: TIMEOUT },
  );
  await page.locator("#live.on").waitFor({ timeout: TIMEOUT });
  console.log(`ok list: ${await page.locator("#actions li").count()} actions, names like ${firstName}`);

  // A new action arrives over the stream and goes on top, with its moderator's name.
  console.log("insert");
  // `<id> <name>`, and ` also <id>` for a row committed just before it with a lower id.
  const [reply, also] = (await input.next()).value.split(" also ");
  const [id, ...name] = reply.split(" ");
  const row = page.locator(`#actions li[data-id="${id}"]`);
  await row.waitFor({ timeout: TIMEOUT });
  await page.waitForFunction(
    ([id, name]) => document.querySelector(`#actions li[data-id="${id}"] .who`)?.textContent === name,
    [id, name.join(" ")],
    { timeout: TIMEOUT },
  );
  check((await page.getAttribute("#actions li", "data-id")) === id, "the new action is first");
  // Recorded just before it, by an actor that is not a Discord id: shown as it is.
  const legacy = env("PAWTROPOLIS_LEGACY_ACTOR");
  const legacyWho = await page.$$eval(
    "#actions li .who",
    (ws, legacy) => ws.filter((w) => w.closest("li").dataset.moderator === legacy).map((w) => w.textContent),
    legacy,
  );
  check(legacyWho.length === 1 && legacyWho[0] === legacy, `the ${legacy} row shows its actor: ${legacyWho}`);
  if (also) {
    await page.locator(`#actions li[data-id="${also}"]`).waitFor({ timeout: TIMEOUT });
    console.log(`ok late commit: action ${also}, committed after the page loaded with newer rows, appeared`);
  }
  console.log(`ok live: action ${id} by ${name.join(" ")} appeared`);

  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`ok screenshot: ${screenshot}`);
}

// Sign in with Discord: the fake consent page approves at once and the callback lands on `/`.
async function loginFlow(page) {
  await page.locator("#discord-login").waitFor({ timeout: TIMEOUT });
  await page.click("#discord-login");
  await page.waitForURL(`${base}/dashboard/`, { timeout: TIMEOUT });
  await page.locator("#who-name", { hasText: loginAs }).waitFor({ timeout: TIMEOUT });
  const guilds = await page.$$eval("#guild option", (os) => os.map((o) => o.value));
  check(guilds.includes(guild), `the session's guilds ${guilds} include ${guild}`);
  await page.locator("#chart svg rect.bar").first().waitFor({ timeout: TIMEOUT });
  await page.locator("#actions li").nth(19).waitFor({ timeout: TIMEOUT });
  // The stream signs in by cookie too.
  await page.locator("#live.on").waitFor({ timeout: TIMEOUT });
  console.log(`ok login: signed in as ${loginAs}, guilds ${guilds}, chart, list and live stream`);
  // A token link from someone else does not silently replace the session: declined, the page
  // stays the user's.
  let asked = "";
  page.once("dialog", (d) => {
    asked = d.message();
    d.dismiss();
  });
  // From another page: a change of the fragment alone would not load the page again.
  await page.goto("about:blank");
  await page.goto(`${base}/dashboard/#token=pwt_someone_elses&guild_id=${guild}`);
  await page.locator("#who-name", { hasText: loginAs }).waitFor({ timeout: TIMEOUT });
  check(asked.includes("API token"), `asked before a token link replaced the session: "${asked}"`);
  check(!(await page.evaluate(() => sessionStorage.getItem("paw_token"))), "the link's token was not kept");
  console.log("ok token link: asked first, declined, still signed in with Discord");
  await page.click("#sign-out");
  await page.locator("#token-form").waitFor({ timeout: TIMEOUT });
  const me = await page.evaluate(() => fetch("/auth/me").then((r) => r.status));
  check(me === 401, `signed out: /auth/me answers ${me}`);
  console.log("ok logout: the session is gone");
}
