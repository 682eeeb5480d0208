// Drives Debian's Chromium headless (puppeteer-core over the DevTools protocol; nothing downloads a
// browser) through the node's worklist page and prints, as one JSON document, what a person at a
// 1280x800 screen would have seen. The Python test (tests/integration/test_worklist_browser.py)
// makes the assertions; this script only observes, and fails only when the browser cannot be driven.
//
//   node worklist_browser.js --url http://127.0.0.1:PORT --token TOKEN --study UID
//        [--late-uid UID --late-cmd '["storescu", ...]'] [--known '["uid", "patient id", ...]']
//        [--out DIR] [--screenshots DIR] [--chromium /usr/bin/chromium] [--timeout SECONDS]
//
// --study: the study to open (one with findings); --late-cmd: a command (JSON argv) run once the
// list is on screen, which sends the study --late-uid; --known: strings (UIDs, patient IDs) that a
// page refused for want of the token must not contain; --out: debugging screenshots;
// --screenshots: docs/img/worklist.png and worklist-study.png for the README.
"use strict";
const childProcess = require("child_process");
const fs = require("fs");
const path = require("path");
const puppeteer = require("puppeteer-core");

function parseArgs(argv) {
  const a = { chromium: "/usr/bin/chromium", timeout: 60, known: "[]" };
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--") || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    a[argv[i].slice(2).replace(/-/g, "_")] = argv[i + 1];
  }
  for (const k of ["url", "token", "study"]) if (!a[k]) throw new Error(`--${k} is required`);
  a.timeout = Number(a.timeout) * 1000;
  a.known = JSON.parse(a.known);
  return a;
}

// Pixels of a PNG screenshot, decoded by the browser's own PNG decoder on a canvas of a blank page:
// counts pure yellow (255,255,0) and yellowish pixels (an outline blended by scaling is still far
// from grey, whose channels are equal), and the grey ones.
async function countColours(decoder, png) {
  return decoder.evaluate(async (b64) => {
    const img = new Image();
    img.src = "data:image/png;base64," + b64;
    await img.decode();
    const c = document.createElement("canvas");
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let pure = 0, yellowish = 0, grey = 0;
    for (let i = 0; i < d.length; i += 4) {
      const r = d[i], gr = d[i + 1], b = d[i + 2];
      if (r === 255 && gr === 255 && b === 0) ++pure;
      if (r >= 180 && gr >= 180 && b <= 100 && Math.abs(r - gr) <= 60) ++yellowish;
      if (r === gr && gr === b) ++grey;
    }
    return { width: c.width, height: c.height, pure_yellow: pure, yellowish, grey };
  }, png);
}

async function slicePixels(page, decoder) {
  await page.bringToFront();
  const png = await (await page.$("section#study img#slice")).screenshot({ encoding: "base64" });
  return countColours(decoder, png);
}

async function rows(page) {
  return page.$$eval("table#worklist tbody tr.study", (trs) => trs.map((tr) => {
    const thumb = tr.querySelector("img.thumb");
    return { uid: tr.getAttribute("data-study-uid"), text: tr.innerText,
             thumb: thumb ? { src: thumb.getAttribute("src"), loaded: thumb.complete && thumb.naturalWidth > 0 } : null };
  }));
}

// The slice image once it shows `overlay` (1|0) and has loaded (data-loaded="1" after each load).
async function sliceLoaded(page, overlay, timeout) {
  await page.waitForFunction((want) => {
    const img = document.querySelector("section#study img#slice");
    return img && (img.getAttribute("src") || "").includes(`overlay=${want}`) &&
      img.getAttribute("data-loaded") === "1" && img.complete && img.naturalWidth > 0;
  }, { timeout, polling: 100 }, overlay);
  return page.$eval("section#study img#slice", (img) => {
    const m = /\/slices\/(\d+)\.png/.exec(img.getAttribute("src"));
    const checkbox = document.querySelector("input#overlay");
    const range = document.querySelector("input#slice-range");
    const index = document.querySelector("span#slice-index");
    return { src: img.getAttribute("src"), slice: m ? Number(m[1]) : null, natural: [img.naturalWidth, img.naturalHeight],
             overlay_checked: checkbox ? checkbox.checked : null, range_value: range ? Number(range.value) : null,
             slice_index_text: index ? index.innerText : null };
  });
}

// Headless Chromium paints (and so screenshots) only the tab in front.
async function shot(page, file, dirs) {
  await page.bringToFront();
  for (const d of dirs.filter(Boolean)) {
    fs.mkdirSync(d, { recursive: true });
    await page.screenshot({ path: path.join(d, file) });
  }
}

async function apiJson(page, p) {
  return page.evaluate(async (u) => {
    const r = await fetch(u);
    return { status: r.status, body: r.ok ? await r.json() : null };
  }, p);
}

async function studyView(page, decoder, a, out) {
  const v = {};
  v.api = (await apiJson(page, `/api/v1/studies/${a.study}`)).body;
  const link = await page.$(`tr.study[data-study-uid="${a.study}"] a.open`);
  v.opened_with = link ? "a.open" : "row click";
  await (link || await page.$(`tr.study[data-study-uid="${a.study}"]`)).click();
  await page.waitForFunction((uid) => location.hash === `#/study/${uid}`, { timeout: a.timeout, polling: 100 }, a.study);
  v.hash = await page.evaluate(() => location.hash);
  v.on = await sliceLoaded(page, 1, a.timeout);
  v.on.pixels = await slicePixels(page, decoder);
  v.on.image = await (await page.$("section#study img#slice")).boundingBox();
  await shot(page, "worklist-study.png", [out, a.screenshots]);
  v.panels = await page.evaluate(() => Object.fromEntries(["#report", "#outputs", "#audit", "a#back"].map((s) => {
    const e = document.querySelector(`section#study ${s}`) || document.querySelector(s);
    return [s, e ? { text: e.innerText.slice(0, 2000), visible: e.offsetParent !== null } : null];
  })));
  await page.click("input#overlay");
  v.off = await sliceLoaded(page, 0, a.timeout);
  v.off.pixels = await slicePixels(page, decoder);
  await shot(page, "study-overlay-off.png", [out]);
  await page.click("input#overlay");
  v.on_again = await sliceLoaded(page, 1, a.timeout);
  v.on_again.pixels = await slicePixels(page, decoder);
  return v;
}

// A direct link to the study view in a fresh tab of the same (authenticated) context.
async function directLink(context, a) {
  const page = await context.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  await page.goto(`${a.url}/#/study/${a.study}`, { waitUntil: "load", timeout: a.timeout });
  const r = await sliceLoaded(page, 1, a.timeout);
  await page.close();
  return r;
}

// Sends the late study while the list is on screen; the row must appear without a reload (a marker
// set on window before the send survives only if the document was never reloaded).
async function lateStudy(page, a) {
  const r = { uid: a.late_uid };
  await page.bringToFront();
  await page.click("a#back");
  await page.waitForSelector('table#worklist[data-loaded="1"] tbody tr.study', { timeout: a.timeout });
  await page.evaluate(() => { window.__noReloadMarker = 42; });
  const cmd = JSON.parse(a.late_cmd);
  const sent = childProcess.spawnSync(cmd[0], cmd.slice(1), { encoding: "utf8", timeout: a.timeout });
  r.send_status = sent.status;
  r.send_output = (sent.stdout || "") + (sent.stderr || "");
  const t0 = Date.now();
  try {
    await page.waitForSelector(`table#worklist tbody tr.study[data-study-uid="${a.late_uid}"]`, { timeout: a.timeout });
    r.appeared_after_s = (Date.now() - t0) / 1000;
  } catch (e) {
    r.appeared_after_s = null;
    r.error = String(e);
  }
  r.marker = await page.evaluate(() => window.__noReloadMarker);
  r.rows = await rows(page);
  return r;
}

// A fresh browser context (incognito: no cookie) and a wrong token: what reaches the screen.
async function refused(browser, a) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  const r = {};
  const look = async (u) => {
    const resp = await page.goto(u, { waitUntil: "networkidle0", timeout: a.timeout });
    // A page: one more poll period (it polls every 2 s) for anything a script might still fetch.
    if ((resp.headers()["content-type"] || "").startsWith("text/html")) await new Promise((res) => setTimeout(res, 2500));
    const html = await page.content();
    return { status: resp.status(), rows: (await page.$$("tr.study")).length,
             leaked: a.known.filter((s) => s && html.includes(s)), text: (await page.evaluate(() => document.body ? document.body.innerText : "")).slice(0, 500) };
  };
  r.root = await look(`${a.url}/`);
  r.api = await look(`${a.url}/api/v1/worklist`);  // between the two: a hash change alone is no request
  r.study_link = await look(`${a.url}/#/study/${a.study}`);
  r.slice = await look(`${a.url}/api/v1/studies/${a.study}/slices/0.png?overlay=1`);
  r.wrong_token = await look(`${a.url}/?token=${encodeURIComponent("x" + a.token)}`);
  r.cookies = (await page.cookies(a.url)).map((c) => c.name);
  await context.close();
  return r;
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  if (a.out) fs.mkdirSync(a.out, { recursive: true });
  const args = ["--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                "--force-color-profile=srgb", "--window-size=1280,800", "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows"];
  if (process.getuid && process.getuid() === 0) args.push("--no-sandbox");
  const t0 = Date.now();
  // --firefox PATH drives Firefox instead (WebDriver BiDi), with its own arguments.
  const browser = await puppeteer.launch(a.firefox
    ? { browser: "firefox", executablePath: a.firefox, headless: true, args: ["--width=1280", "--height=800"],
        timeout: a.timeout, protocolTimeout: a.timeout }
    : { executablePath: a.chromium, headless: true, args, timeout: a.timeout, protocolTimeout: a.timeout });
  const result = { browser: await browser.version(), errors: {} };
  const log = [];
  // Each phase records its own failure, so one broken part of the page does not hide the others.
  const phase = async (name, fn) => {
    try {
      result[name] = await fn();
      return true;
    } catch (e) {
      result.errors[name] = String(e && e.stack || e);
      return false;
    }
  };
  try {
    const context = browser.defaultBrowserContext();
    const page = await browser.newPage();
    page.on("console", (m) => log.push(`console.${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => log.push(`pageerror: ${e.message}`));
    page.on("requestfailed", (q) => log.push(`requestfailed: ${q.url()} ${q.failure() && q.failure().errorText}`));
    page.on("response", (r) => { if (r.status() >= 400) log.push(`http ${r.status()}: ${r.url()}`); });
    const decoder = await browser.newPage();
    await page.setViewport({ width: 1280, height: 800 });

    await phase("login", async () => {
      const resp = await page.goto(`${a.url}/?token=${encodeURIComponent(a.token)}`, { waitUntil: "load", timeout: a.timeout });
      return {
        chain: resp.request().redirectChain().map((q) => ({ url: q.url(), status: q.response() && q.response().status(),
                                                             set_cookie: q.response() && q.response().headers()["set-cookie"] })),
        status: resp.status(), final_url: page.url(),
        cookies: (await page.cookies()).map((c) => ({ name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite, path: c.path })),
      };
    });
    const listed = await phase("list", async () => {
      await page.waitForSelector('table#worklist[data-loaded="1"] tbody tr.study', { timeout: a.timeout });
      // The thumbnails load after the rows; give them until they have all settled.
      // Interval polling: requestAnimationFrame (the default) does not run in a tab that is not in front.
      await page.bringToFront();
      await page.waitForFunction(() => [...document.querySelectorAll("img.thumb")].every((i) => i.complete),
                                 { timeout: a.timeout, polling: 100 });
      const r = { rows: await rows(page), api: await apiJson(page, "/api/v1/worklist") };
      await shot(page, "worklist.png", [a.out, a.screenshots]);
      return r;
    });
    if (listed) await phase("study", () => studyView(page, decoder, a, a.out));
    await phase("direct_link", () => directLink(context, a));
    if (listed && a.late_cmd) await phase("late", () => lateStudy(page, a));
    if (listed) await phase("late_screenshot", () => shot(page, "worklist-late.png", [a.out]));
    await phase("refused", () => refused(browser, a));
  } finally {
    result.log = log.slice(0, 200);
    result.seconds = (Date.now() - t0) / 1000;
    await browser.close();
  }
  process.stdout.write(JSON.stringify(result, null, 1) + "\n");
}

main().catch((e) => { console.error(e); process.exit(1); });
