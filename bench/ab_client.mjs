// Two coordinators (or any two OpenAI-compatible bases) side by side in one run, alternating in
// rounds so the machine's drift falls on both: keep-alive chat p50 and stream time to first token.
//   node bench/ab_client.mjs BASE_A BASE_B MODEL [ROUNDS]
// bench/http_ab.sh starts two coordinator builds and runs this.
import http from "node:http";

const [a, b, model, roundsArg] = process.argv.slice(2, 6);
const ROUNDS = Number(roundsArg ?? 6), N = 150;
const chat = (stream) => JSON.stringify({ model, stream, max_tokens: 16,
  messages: [{ role: "user", content: "What is the capital of Peru?" }] });
const pct = (xs, p) => { const s = [...xs].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

function post(base, agent, body) {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    let token = null, seen = "";
    const req = http.request(new URL(base + "/chat/completions"),
                             { method: "POST", agent, headers: { "content-type": "application/json" } }, (res) => {
      res.on("data", (bytes) => {
        if (token !== null) return;
        seen += bytes.toString();
        if (/"content":"[^"]/.test(seen)) token = process.hrtime.bigint();
      });
      res.on("end", () => {
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode} from ${base}`));
        const end = process.hrtime.bigint();
        resolve({ total: Number(end - start) / 1e3, token: Number((token ?? end) - start) / 1e3 });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function batch(base, stream) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < 10; i++) await post(base, agent, chat(stream));
  const xs = [];
  for (let i = 0; i < N; i++) {
    const r = await post(base, agent, chat(stream));
    xs.push(stream ? r.token : r.total);
  }
  agent.destroy();
  return xs;
}

const all = { a: { chat: [], ttft: [] }, b: { chat: [], ttft: [] } };
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, base] of round % 2 ? [["b", b], ["a", a]] : [["a", a], ["b", b]]) {
    all[name].chat.push(...await batch(base, false));
    all[name].ttft.push(...await batch(base, true));
  }
}
const f = (x) => x.toFixed(0);
for (const name of ["a", "b"]) {
  console.log(`${name}: keep-alive chat p50 ${f(pct(all[name].chat, 0.5))} us, p90 ${f(pct(all[name].chat, 0.9))} | ` +
              `stream first token p50 ${f(pct(all[name].ttft, 0.5))} us, p90 ${f(pct(all[name].ttft, 0.9))}`);
}
console.log(`b/a: keep-alive chat p50 ${(pct(all.b.chat, 0.5) / pct(all.a.chat, 0.5)).toFixed(3)}, ` +
            `first token p50 ${(pct(all.b.ttft, 0.5) / pct(all.a.ttft, 0.5)).toFixed(3)}`);
