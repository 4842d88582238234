// The web console in a real browser: Debian's Chromium, headless, driven over the DevTools
// protocol by puppeteer-core (pinned in package-lock.json), against a real mesh that
// tests/integration/console_test.cc starts. One phase per run:
//   node console_browser.mjs PHASE
// Environment: LOOM_CONSOLE (http://host:port/console/), LOOM_OPERATOR_KEY, LOOM_ALICE_KEY,
// LOOM_BOB_KEY, LOOM_PROVIDER_KEY, LOOM_COMPILED_ID and LOOM_EXPECT (JSON: the compiled
// request's sub-tasks and edges), LOOM_COMPETE_ID (three candidates), LOOM_XSS_ID, LOOM_SIGNAL (a file to create when the page is
// ready for the worker to be killed), LOOM_SCREENSHOTS (a directory; optional).
// Prints each check and "N passed, M failed"; exits 1 on any failure.
import fs from "node:fs";
import puppeteer from "puppeteer-core";

const phase = process.argv[2];
const base = process.env.LOOM_CONSOLE;
let passed = 0, failed = 0;
function check(name, ok, detail = "") {
  if (ok) passed++; else failed++;
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${ok || !detail ? "" : ": " + detail}`);
}

const browser = await puppeteer.launch({
  executablePath: process.env.LOOM_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--window-size=1400,900"],
});
const page = await browser.newPage();
await page.setViewport({ width: 1400, height: 900 });
const problems = [];
page.on("pageerror", (e) => problems.push("page error: " + e.message));
page.on("dialog", async (d) => { problems.push("a dialog opened: " + d.message()); await d.dismiss(); });

async function open(key) {
  await page.goto("about:blank");  // a new document: the key is read as the page starts
  await page.goto(base + "#key=" + encodeURIComponent(key), { waitUntil: "load" });
  await page.waitForFunction(() => !document.getElementById("tabs").hidden, { timeout: 15000 });
}
async function tab(view) {
  await page.click(`nav button[data-view="${view}"]`);
}
async function shot(name) {
  if (!process.env.LOOM_SCREENSHOTS) return;
  // The page as far as it goes (at most one screen): no blank below it.
  const height = await page.evaluate(() => Math.min(900, document.body.scrollHeight + 16));
  await page.screenshot({ path: `${process.env.LOOM_SCREENSHOTS}/${name}.png`,
                          clip: { x: 0, y: 0, width: 1400, height } });
}
const rows = (selector) => page.$$eval(selector + " tbody tr", (trs) => trs.map((tr) => tr.innerText));

try {
  if (phase === "mesh") {
    await open(process.env.LOOM_OPERATOR_KEY);
    check("the key left the address bar", !(await page.evaluate(() => location.href)).includes("key="));
    check("the page knows its viewer", (await page.$eval("#who", (e) => e.textContent)) === "operator");
    await page.waitForFunction(() => document.querySelectorAll("#devices tbody tr").length === 3,
                               { timeout: 20000 });
    const devices = await page.$$eval("#devices tbody tr", (trs) => trs.map((tr) => tr.dataset.device));
    check("the mesh lists its three devices", JSON.stringify(devices) === '["dev-a","dev-b","dev-c"]',
          JSON.stringify(devices));
    const text = (await rows("#devices")).join("\n");
    check("each device shows its state, models and kind",
          text.includes("healthy") && text.includes("llama-3.1-8b (llama)") && text.includes("simulated"), text);
    await shot("mesh");
  } else if (phase === "requests") {
    const expect = JSON.parse(process.env.LOOM_EXPECT);
    await open(process.env.LOOM_OPERATOR_KEY);
    await tab("requests");
    const id = process.env.LOOM_COMPILED_ID;
    await page.waitForSelector(`tr[data-request="${id}"]`, { timeout: 15000 });
    await page.click(`tr[data-request="${id}"]`);
    await page.waitForFunction((n) => document.querySelectorAll("#detail-graph .node").length === n,
                               { timeout: 15000 }, expect.nodes.length);
    const nodes = await page.$$eval("#detail-graph .node", (gs) => gs.map((g) => g.dataset.subTask));
    check("the plan's graph has a node per sub-task and one for synthesis",
          JSON.stringify([...nodes].sort()) === JSON.stringify([...expect.nodes].sort()),
          JSON.stringify(nodes));
    const edges = await page.$$eval("#detail-graph .edge", (ps) => ps.map((p) => p.dataset.from + ">" + p.dataset.to));
    check("its edges are the dependencies and the parts synthesis weaves",
          JSON.stringify([...edges].sort()) === JSON.stringify([...expect.edges].sort()), JSON.stringify(edges));
    const labels = await page.$$eval("#detail-graph .node text", (ts) => ts.map((t) => t.textContent).join(" | "));
    check("nodes name their category and device", expect.categories.every((c) => labels.includes(c)) &&
          labels.includes("dev-"), labels);
    const paid = (await rows("#detail-contributions")).length;
    check("the request shows the contribution each device got", paid >= expect.nodes.length - 1, String(paid));
    await shot("request");

    // A compete request: its candidates, the verdict they feed, and one winner.
    const competing = process.env.LOOM_COMPETE_ID;
    await page.click(`tr[data-request="${competing}"]`);
    await page.waitForFunction(() => document.querySelector('#detail-graph .node[data-sub-task="verdict"]'),
                               { timeout: 15000 });
    const contest = await page.evaluate(() => ({
      candidates: document.querySelectorAll("#detail-graph .node").length - 1,
      winners: [...document.querySelectorAll("#detail-graph .node.winner")].map((g) => g.dataset.subTask),
      edges: document.querySelectorAll('#detail-graph .edge[data-to="verdict"]').length,
    }));
    check("a compete request shows its candidates, the verdict and one winner",
          contest.candidates === 3 && contest.winners.length === 1 && contest.edges === 3,
          JSON.stringify(contest));
    await shot("compete");

    // A prompt that carries markup is shown as text, and nothing in it runs.
    const xss = process.env.LOOM_XSS_ID;
    await page.click(`tr[data-request="${xss}"]`);
    await page.waitForFunction(() => document.getElementById("detail-prompt").textContent.includes("<script>"),
                               { timeout: 15000 });
    const injected = await page.evaluate(() => ({
      pwned: window.__pwned,
      scripts: document.querySelectorAll("main script, main img").length,
      prompt: document.getElementById("detail-prompt").textContent,
    }));
    check("a prompt's <script> renders as text and never runs",
          injected.pwned === undefined && injected.scripts === 0 && injected.prompt.includes("<img src=x"),
          JSON.stringify(injected));

    await tab("explorer");
    await page.type("#explain-prompt",
                    "1. Write a Python function that reverses a string. 2. Summarize the causes of the French Revolution.");
    await page.click('#explain-form button[type="submit"]');
    await page.waitForFunction(() => document.querySelectorAll("#explain-graph .node").length >= 3,
                               { timeout: 15000 });
    const reasons = await page.$$eval("#explain-reasons li", (li) => li.length);
    const assigned = (await rows("#explain-assignments")).join("\n");
    check("the plan explorer draws the plan with its reasons and runners-up",
          reasons > 0 && assigned.includes("then "), assigned);
    await shot("explorer");

    await tab("money");
    await page.waitForFunction(() => document.querySelectorAll("#payouts tbody tr").length > 0, { timeout: 15000 });
    const payouts = (await rows("#payouts")).join("\n");
    check("money lists the providers' payouts", payouts.includes("prov-dev-"), payouts);
    const txns = (await rows("#transactions")).join("\n");
    check("and the ledger's recent transactions", txns.includes("settle:client:alice/alice-compiled"), txns);
    await page.click("#verify");
    await page.waitForFunction(() => document.getElementById("verify-result").textContent.startsWith("ok"),
                               { timeout: 15000 });
    check("verify runs from the page", true);
    await shot("money");

    await tab("affinities");
    await page.waitForFunction(() => document.querySelectorAll("#heatmap tbody tr").length > 0, { timeout: 15000 });
    const heat = (await rows("#heatmap")).join("\n");
    check("the affinity heat map has a row per family", heat.includes("llama") && heat.includes("qwen"), heat);
    await shot("affinities");
  } else if (phase === "isolation") {
    await open(process.env.LOOM_BOB_KEY);
    await tab("requests");
    await page.waitForFunction(() => document.querySelectorAll("#request-list tbody tr").length >= 1,
                               { timeout: 15000 });
    const listed = await page.$$eval("#request-list tbody tr", (trs) => trs.map((tr) => tr.dataset.request));
    check("a client sees its own requests only", !listed.includes(process.env.LOOM_COMPILED_ID) &&
          listed.every((id) => !id.startsWith("client:alice")), JSON.stringify(listed));
    const status = await page.evaluate(async (id) => {
      const key = sessionStorage.getItem("loom-key");
      const r = await fetch("/console/api/requests/" + encodeURIComponent(id), { headers: { Authorization: "Bearer " + key } });
      return r.status;
    }, process.env.LOOM_COMPILED_ID);
    check("another client's request is not found", status === 404, String(status));
    await tab("money");
    await page.waitForFunction(() => document.getElementById("client-balance").textContent !== "", { timeout: 15000 });
    check("a client sees its balance, not the payouts",
          await page.$eval("#money-payouts", (e) => e.hidden), "payouts shown");

    await open(process.env.LOOM_PROVIDER_KEY);
    check("a provider has no requests view",
          await page.$eval('nav button[data-view="requests"]', (b) => b.hidden));
    await tab("money");
    await page.waitForFunction(() => document.querySelectorAll("#payouts tbody tr").length > 0, { timeout: 15000 });
    const own = await rows("#payouts");
    check("a provider sees its own earnings only", own.length === 1 && own[0].includes("prov-dev-a"),
          JSON.stringify(own));
  } else if (phase === "suspect") {
    await open(process.env.LOOM_OPERATOR_KEY);
    await page.waitForSelector('tr[data-device="dev-c"]', { timeout: 15000 });
    await page.evaluate(() => { window.__loaded_once = true; });
    fs.writeFileSync(process.env.LOOM_SIGNAL, "kill dev-c\n");
    await page.waitForFunction(() => {
      const row = document.querySelector('tr[data-device="dev-c"]');
      return row && row.innerText.includes("suspect");
    }, { timeout: 30000 });
    check("a killed worker turns suspect", true);
    await shot("suspect");
    await page.waitForFunction(() => !document.querySelector('tr[data-device="dev-c"]'), { timeout: 30000 });
    check("then disappears", true);
    check("without a reload", await page.evaluate(() => window.__loaded_once === true));
  } else {
    check("a known phase", false, phase);
  }
} catch (e) {
  check(`phase ${phase} finished`, false, e.message);
  await shot(`failure-${phase}`).catch(() => {});
}
for (const p of problems) check("no page errors or dialogs", false, p);
await browser.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
