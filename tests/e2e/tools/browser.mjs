// Drives Debian's headless Chromium through playwright-core for tests/e2e/browser.rs.
//
//   node browser.mjs CONFIG.json
//
// CONFIG: { admin: "http://127.0.0.1:PORT", echo: "127.0.0.1:PORT", getfile: { port, file, missing },
//           out: DIR, chromium: "/usr/bin/chromium" }
// 1. The status page: an echo connection this script opens appears, its Close button ends it (the
//    socket sees the close), and its row goes.
//    Its Pause button makes the echo listener refuse a new connection; Resume serves again.
// 2. The getfile form: a download of `file` is saved as OUT/download-<name>; a request for
//    `missing` shows the refusal.
// Screenshots go to OUT/*.png. The last line printed is a JSON summary; any failure exits non-zero.
import { readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { chromium } from "playwright-core";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const out = (name) => path.join(config.out, name);
const step = (what) => console.log(`step: ${what}`);

function echoClient(addr) {
  const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port }, () => {
      let got = "";
      const closed = new Promise((done) => socket.on("close", done));
      socket.on("data", (d) => {
        got += d.toString();
        if (got === "Echo=>from the browser test") resolve({ socket, closed, localPort: socket.localPort });
      });
      socket.write("from the browser test");
    });
    socket.on("error", reject);
    setTimeout(() => reject(new Error("the echo server did not answer within 10 s")), 10000);
  });
}

// Connects and expects the server to close without a byte (a paused listener).
function refusedClient(addr) {
  const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];
  return new Promise((resolve, reject) => {
    let got = "";
    const socket = net.connect({ host, port }, () => socket.write("anyone?"));
    socket.on("data", (d) => { got += d.toString(); });
    socket.on("close", () => (got === "" ? resolve() : reject(new Error(`a paused listener answered ${JSON.stringify(got)}`))));
    socket.on("error", () => {});
    setTimeout(() => reject(new Error("a paused listener kept the connection open for 10 s")), 10000);
  });
}

const browser = await chromium.launch({
  executablePath: config.chromium,
  headless: true,
  // Root in CI: Chromium's sandbox needs a user namespace it may not get.
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const summary = {};
try {
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);

  step("status page");
  await page.goto(config.admin + "/");
  await page.locator('#plugins tbody tr[data-plugin="echo"]').waitFor();
  await page.screenshot({ path: out("1-status.png"), fullPage: true });

  step("a new connection appears");
  const echo = await echoClient(config.echo);
  const peer = `127.0.0.1:${echo.localPort}`;
  const row = page.locator("#connections tbody tr", { hasText: peer });
  await row.waitFor();
  const id = await row.getAttribute("data-id");
  summary.connection = { id: Number(id), peer };
  await page.screenshot({ path: out("2-connection.png"), fullPage: true });

  step("close it");
  await row.locator("button.close").click();
  const closedInTime = await Promise.race([echo.closed.then(() => true), new Promise((r) => setTimeout(() => r(false), 10000))]);
  if (!closedInTime) throw new Error(`connection ${id} was not closed within 10 s of clicking Close`);
  await page.locator(`#connections tbody tr[data-id="${id}"]`).waitFor({ state: "detached" });
  summary.closedMessage = await page.locator("#message").textContent();
  await page.screenshot({ path: out("3-closed.png"), fullPage: true });

  step("pause and resume the echo listener");
  const echoRow = page.locator('#plugins tbody tr[data-plugin="echo"]');
  await echoRow.locator("button.pause").click();
  await echoRow.locator("button.resume").waitFor();
  summary.pausedMessage = await page.locator("#message").textContent();
  await refusedClient(config.echo);
  await page.screenshot({ path: out("3b-paused.png"), fullPage: true });
  await echoRow.locator("button.resume").click();
  await echoRow.locator("button.pause").waitFor();
  const again = await echoClient(config.echo);
  again.socket.end();

  step("getfile form: download");
  await page.goto(config.admin + "/getfile");
  await page.fill("#server", "127.0.0.1");
  await page.fill("#port", String(config.getfile.port));
  await page.fill("#file", config.getfile.file);
  await page.screenshot({ path: out("4-getfile-form.png"), fullPage: true });
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#submit")]);
  const saved = out("download-" + download.suggestedFilename());
  await download.saveAs(saved);
  summary.downloaded = saved;
  summary.suggested = download.suggestedFilename();

  step("getfile form: refusal");
  await page.goto(config.admin + "/getfile");
  await page.fill("#port", String(config.getfile.port));
  await page.fill("#file", config.getfile.missing);
  await Promise.all([page.waitForNavigation(), page.click("#submit")]);
  summary.refusal = await page.locator("#error").textContent();
  await page.screenshot({ path: out("5-getfile-refused.png"), fullPage: true });
  await context.close();
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
