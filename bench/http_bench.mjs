// The HTTP path as SDKs use it, measured in one run beside its baseline (bench/http_bench.sh
// starts the processes): the coordinator -> a worker on the `openai` backend -> an instant
// OpenAI-compatible stand-in, against the same stand-in called directly.
//   node bench/http_bench.mjs DIRECT_BASE COORDINATOR_BASE MODEL [--json]
// Prints p50/p99 per scenario and the ratios; plain Node http, no SDK overhead.
import http from "node:http";
import net from "node:net";

const [direct, coordinator, model] = process.argv.slice(2, 5);
const json = process.argv.includes("--json");
const N = 400, CONCURRENT = 16, PER_CLIENT = 100;

// Portkey's gateway (PORTKEY_BASE, started by http_bench.sh) forwards to the same stand-in,
// told so per request by its headers.
const portkey = process.env.PORTKEY_BASE;
const headersFor = (base) => base === portkey
  ? { "content-type": "application/json", "x-portkey-provider": "openai",
      "x-portkey-custom-host": direct, authorization: "Bearer unused" }
  : { "content-type": "application/json" };

function post(base, agent, body, onFirstData) {
  return new Promise((resolve, reject) => {
    const url = new URL(base + "/chat/completions");
    const start = process.hrtime.bigint();
    let first = null, token = null, seen = "";
    const req = http.request(url, { method: "POST", agent, headers: headersFor(base) }, (res) => {
      // First byte, and first token: the first chunk whose delta carries text (OpenAI's and
      // Loom's streams open with an empty role chunk, which is not a token).
      res.on("data", (bytes) => {
        const now = process.hrtime.bigint();
        if (first === null) first = now;
        if (token === null) {
          seen += bytes.toString();
          if (/"content":"[^"]/.test(seen)) token = now;
        }
      });
      res.on("end", () => {
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode} from ${base}`));
        const end = process.hrtime.bigint();
        resolve({ total: Number(end - start) / 1e3, first: Number((first ?? end) - start) / 1e3,
                  token: Number((token ?? end) - start) / 1e3 });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

const chat = (stream) => JSON.stringify({ model, stream, max_tokens: 16,
  messages: [{ role: "user", content: "What is the capital of Peru?" }] });
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

async function sequential(base, keepAlive, stream) {
  const agent = new http.Agent({ keepAlive, maxSockets: 1 });
  for (let i = 0; i < 20; i++) await post(base, agent, chat(stream));  // warm up
  const total = [], first = [], token = [];
  for (let i = 0; i < N; i++) {
    const r = await post(base, agent, chat(stream));
    total.push(r.total); first.push(r.first); token.push(r.token);
  }
  agent.destroy();
  return { p50: pct(total, 0.5), p99: pct(total, 0.99), first_byte_p50: pct(first, 0.5),
           ttft_p50: pct(token, 0.5) };
}

async function concurrent(base) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENT });
  const start = process.hrtime.bigint();
  await Promise.all(Array.from({ length: CONCURRENT }, async () => {
    for (let i = 0; i < PER_CLIENT; i++) await post(base, agent, chat(false));
  }));
  agent.destroy();
  return (CONCURRENT * PER_CLIENT) / (Number(process.hrtime.bigint() - start) / 1e9);
}

// /healthz while the door is loaded: 256 idle keep-alive connections (each served one request
// and kept open) and 64 streams running on the slow device (their requests hold threads).
async function probesUnderLoad(base) {
  const url = new URL(base);
  const idle = [];
  for (let i = 0; i < 256; i++) {
    idle.push(await new Promise((resolve, reject) => {
      const s = net.connect(Number(url.port), url.hostname, () => {
        s.write(`GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`);
        s.once("data", () => resolve(s));
      });
      s.on("error", reject);
    }));
  }
  const streams = [];
  let open = 0;
  await new Promise((resolve, reject) => {
    for (let i = 0; i < 64; i++) {
      const req = http.request(new URL(base + "/chat/completions"),
                               { method: "POST", headers: { "content-type": "application/json" } }, (res) => {
        // A refusal (429 past an admission limit) is not an open stream.
        if (res.statusCode !== 200) reject(new Error(`a load stream got HTTP ${res.statusCode}`));
        res.once("data", () => { if (++open === 64) resolve(); });
        res.on("error", () => {});
      });
      req.on("error", () => {});
      req.end(JSON.stringify({ model: "slow-sim", stream: true,
                               messages: [{ role: "user", content: "Tell me a long story." }] }));
      streams.push(req);
    }
    setTimeout(() => reject(new Error(`only ${open} of 64 streams started`)), 30000).unref();
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const times = [];
  for (let i = 0; i < 500; i++) {
    const start = process.hrtime.bigint();
    await new Promise((resolve, reject) => {
      http.get(new URL(url.origin + "/healthz"), { agent }, (res) => { res.resume(); res.on("end", resolve); })
          .on("error", reject);
    });
    times.push(Number(process.hrtime.bigint() - start) / 1e3);
  }
  agent.destroy();
  for (const r of streams) r.destroy();
  for (const s of idle) s.destroy();
  return { p50_us: pct(times, 0.5), p99_us: pct(times, 0.99), idle_connections: 256, open_streams: 64 };
}

const out = {};
const targets = [["direct", direct], ["coordinator", coordinator]];
if (portkey) targets.push(["portkey", portkey]);
// A scenario a peer cannot serve is reported as null (Portkey 1.15.2 on Node 20 answers every
// stream with 500: "TypeError: immutable" appending a header in its stream handler).
const orNull = (p) => p.catch((e) => { console.error(`(${e.message})`); return null; });
for (const [name, base] of targets) {
  out[name] = {
    keepalive: await sequential(base, true, false),
    new_connection: await sequential(base, false, false),
    stream_keepalive: name === "portkey" ? await orNull(sequential(base, true, true))
                                         : await sequential(base, true, true),
    concurrent16_rps: await concurrent(base),
  };
}
out.coordinator.healthz_under_load = await probesUnderLoad(coordinator);
const d = out.direct, c = out.coordinator;
out.ratios = {
  keepalive_p50: c.keepalive.p50 / d.keepalive.p50,
  new_connection_p50: c.new_connection.p50 / d.new_connection.p50,
  concurrent16_throughput: c.concurrent16_rps / d.concurrent16_rps,
  stream_ttft_added_us: c.stream_keepalive.ttft_p50 - d.stream_keepalive.ttft_p50,
  stream_first_byte_added_us: c.stream_keepalive.first_byte_p50 - d.stream_keepalive.first_byte_p50,
};
if (out.portkey) {
  const p = out.portkey;
  out.portkey_ratios = {
    keepalive_p50: p.keepalive.p50 / d.keepalive.p50,
    new_connection_p50: p.new_connection.p50 / d.new_connection.p50,
    concurrent16_throughput: p.concurrent16_rps / d.concurrent16_rps,
    stream_ttft_added_us: p.stream_keepalive ? p.stream_keepalive.ttft_p50 - d.stream_keepalive.ttft_p50 : null,
  };
}
if (json) {
  console.log(JSON.stringify(out, null, 2));
} else {
  const f = (x) => x.toFixed(0);
  for (const name of targets.map(([n]) => n)) {
    const o = out[name];
    console.log(`${name.padEnd(12)} keep-alive p50 ${f(o.keepalive.p50)} us p99 ${f(o.keepalive.p99)} | new connection p50 ${f(o.new_connection.p50)} us | ` +
                `stream first byte p50 ${o.stream_keepalive ? f(o.stream_keepalive.first_byte_p50) + " us" : "n/a"}, first token ${o.stream_keepalive ? f(o.stream_keepalive.ttft_p50) + " us" : "n/a"} | 16 clients ${f(o.concurrent16_rps)} req/s`);
  }
  const h = c.healthz_under_load;
  console.log(`/healthz with 256 idle keep-alive connections and 64 open streams: p50 ${f(h.p50_us)} us, p99 ${f(h.p99_us)} us (target p99 <= 10 ms)`);
  const r = out.ratios;
  console.log(`ratios: keep-alive p50 ${r.keepalive_p50.toFixed(2)}x (target <= 3x), new connection ${r.new_connection_p50.toFixed(2)}x, ` +
              `16-client throughput ${r.concurrent16_throughput.toFixed(2)}x (target >= 0.3x), stream first token +${f(r.stream_ttft_added_us)} us (target <= 1000), first byte +${f(r.stream_first_byte_added_us)} us`);
  if (out.portkey_ratios) {
    const p = out.portkey_ratios;
    console.log(`portkey ratios: keep-alive p50 ${p.keepalive_p50.toFixed(2)}x, new connection ${p.new_connection_p50.toFixed(2)}x, ` +
                `16-client throughput ${p.concurrent16_throughput.toFixed(2)}x, stream first token ` +
                (p.stream_ttft_added_us === null ? "n/a (its streams fail)" : `+${f(p.stream_ttft_added_us)} us`));
  }
}
