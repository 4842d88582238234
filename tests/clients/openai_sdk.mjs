// Drives a running Loom coordinator with the official `openai` npm SDK (the versions pinned in
// package-lock.json: "openai" is v6, "openai4" is v4), as an application would. Started by
// tests/integration/client_sdk_test.cc, which gives it the mesh through the environment:
//   LOOM_BASE_URL  http://127.0.0.1:PORT/v1     LOOM_KEY  a funded key   LOOM_POOR_KEY  unfunded
//   LOOM_MODEL     a model served on the mesh   LOOM_SDK  "openai" or "openai4"
//   LOOM_SLOW_MODEL  a model on a slow device (a stream that is still running when aborted)
//   LOOM_ABORT_ID    the request id of the aborted stream (the test checks its billing)
//   LOOM_TIMEOUT_ID  the request id of a call that times out and is retried (billing too)
// Prints one line per check and "N passed, N failed"; exits 1 if any check failed.
import { checks } from "./checks.mjs";

const sdkName = process.env.LOOM_SDK || "openai";
const { check, expect, finish } = checks(sdkName);
const { default: OpenAI } = await import(sdkName);
const baseURL = process.env.LOOM_BASE_URL;
const model = process.env.LOOM_MODEL;

// Counts the HTTP requests the SDK really sends, to see its retries.
let sent = 0;
const countingFetch = (url, init) => { sent++; return fetch(url, init); };
const client = new OpenAI({ baseURL, apiKey: process.env.LOOM_KEY, maxRetries: 2, fetch: countingFetch });

await check("models.list and models.retrieve", async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  expect(ids.includes("loom-auto") && ids.includes(model), `models: ${ids}`);
  const one = await client.models.retrieve(model);
  expect(one.id === model, `retrieve gave ${JSON.stringify(one)}`);
});

await check("chat completion with usage, finish_reason and x-request-id", async () => {
  const { data, response } = await client.chat.completions
      .create({ model, messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Who wrote Hamlet?" }] })
      .withResponse();
  expect(data.choices[0].message.content.length > 0, "empty answer");
  expect(data.choices[0].finish_reason === "stop", `finish_reason ${data.choices[0].finish_reason}`);
  expect(data.usage.completion_tokens > 0, "no usage");
  expect(response.headers.get("x-request-id"), "no x-request-id");
});

await check("streamed chat with include_usage", async () => {
  const stream = await client.chat.completions.create({
    model, stream: true, stream_options: { include_usage: true },
    messages: [{ role: "user", content: "Tell me about the sea." }],
  });
  let text = "", finish = null, usage = null;
  for await (const chunk of stream) {
    if (chunk.choices.length > 0) {
      text += chunk.choices[0].delta.content ?? "";
      if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  expect(text.includes("[simulated]"), `text: ${text}`);
  expect(finish === "stop", `finish_reason ${finish}`);
  expect(usage && usage.completion_tokens > 0, "no usage chunk");
});

await check("max_tokens cut says length; stop sequences apply", async () => {
  const cut = await client.chat.completions.create({ model, max_tokens: 3, messages: [{ role: "user", content: "Count to ten." }] });
  expect(cut.choices[0].finish_reason === "length", `finish_reason ${cut.choices[0].finish_reason}`);
  const stopped = await client.chat.completions.create({ model, stop: [" re:"], temperature: 0, seed: 1,
                                                          messages: [{ role: "user", content: "Count to ten." }] });
  expect(!stopped.choices[0].message.content.includes(" re:"), `not stopped: ${stopped.choices[0].message.content}`);
});

await check("responses.create, plain and streamed", async () => {
  const r = await client.responses.create({ model, instructions: "Be brief.",
                                            input: "What is the capital of Peru?" });
  expect(r.status === "completed", `status ${r.status}`);
  expect(r.output_text.length > 0, "empty output_text");
  expect(r.usage.output_tokens > 0, `usage ${JSON.stringify(r.usage)}`);
  const stream = await client.responses.create({ model, stream: true,
      input: [{ role: "user", content: [{ type: "input_text", text: "Who wrote Hamlet?" }] }] });
  let text = "", done = null;
  for await (const e of stream) {
    if (e.type === "response.output_text.delta") text += e.delta;
    if (e.type === "response.completed") done = e.response;
  }
  expect(text.length > 0 && done && done.output_text === text, `streamed ${JSON.stringify(text)}`);
  await client.responses.create({ model, input: "hi", previous_response_id: "resp_x" }).then(
      () => { throw new Error("400 expected"); },
      (e) => expect(e instanceof OpenAI.BadRequestError && /previous_response_id/.test(e.message), `got ${e}`));
});

const weatherTool = { type: "function", function: { name: "get_weather", description: "Weather in a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } };

await check("tool calling: the call, streamed and not, then the result turn", async () => {
  const messages = [{ role: "user", content: "What is the weather in Lima? Use get_weather." }];
  const first = await client.chat.completions.create({ model, messages, tools: [weatherTool] });
  const choice = first.choices[0];
  expect(choice.finish_reason === "tool_calls", `finish_reason ${choice.finish_reason}`);
  const call = choice.message.tool_calls && choice.message.tool_calls[0];
  expect(call && call.function.name === "get_weather", `tool_calls ${JSON.stringify(choice.message)}`);
  expect(typeof JSON.parse(call.function.arguments).city === "string", `arguments ${call.function.arguments}`);
  // Streamed, the SDK's own helper assembles the deltas.
  // (v4 has the helper under beta.)
  const api = client.chat.completions.stream ? client.chat.completions : client.beta.chat.completions;
  const stream = api.stream({ model, messages, tools: [weatherTool] });
  const done = await stream.finalChatCompletion();
  expect(done.choices[0].message.tool_calls[0].function.name === "get_weather", "no streamed tool call");
  const answer = await client.chat.completions.create({ model, tools: [weatherTool], messages: [
      ...messages, choice.message, { role: "tool", tool_call_id: call.id, content: "18 C, cloudy" }] });
  expect(answer.choices[0].finish_reason === "stop", `finish_reason ${answer.choices[0].finish_reason}`);
  expect(answer.choices[0].message.content.includes("18 C, cloudy"), answer.choices[0].message.content);
});

await check("structured output: json_schema and json_object are valid JSON", async () => {
  const r = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Name a city." }],
      response_format: { type: "json_schema", json_schema: { name: "city", strict: true, schema: {
        type: "object", properties: { name: { type: "string" }, population: { type: "integer" } },
        required: ["name", "population"], additionalProperties: false } } } });
  const city = JSON.parse(r.choices[0].message.content);
  expect(typeof city.name === "string" && Number.isInteger(city.population), r.choices[0].message.content);
  const o = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Answer in JSON." }],
                                                   response_format: { type: "json_object" } });
  expect(typeof JSON.parse(o.choices[0].message.content) === "object", o.choices[0].message.content);
});

await check("legacy completions, plain and streamed", async () => {
  const done = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 12 });
  expect(done.object === "text_completion", `object ${done.object}`);
  expect(done.choices[0].text.length > 0, "no text");
  expect(done.choices[0].finish_reason === "length", `finish_reason ${done.choices[0].finish_reason}`);
  expect(done.usage.completion_tokens > 0, "no usage");
  let text = "";
  let finish = null;
  const stream = await client.completions.create({ model, prompt: "Once upon a time", stream: true });
  for await (const chunk of stream) {
    text += chunk.choices[0]?.text ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  expect(text.length > 0 && finish === "stop", `streamed ${JSON.stringify(text)} ${finish}`);
});

await check("compiled request through loom-auto", async () => {
  const r = await client.chat.completions.create({
    model: "loom-auto",
    messages: [{ role: "user", content: "Translate this Python code to Rust and explain the key differences between the two implementations." }],
    loom: { mode: "compiled" },
  });
  expect(r.loom && r.loom.plan_kind === "compiled", `plan ${JSON.stringify(r.loom)}`);
  expect(r.choices[0].message.content.length > 0, "empty");
});

await check("errors arrive as the SDK's typed errors", async () => {
  const bad = new OpenAI({ baseURL, apiKey: "loom_not_a_key", maxRetries: 0 });
  await bad.models.list().then(() => { throw new Error("401 expected"); },
                               (e) => expect(e instanceof OpenAI.AuthenticationError, `got ${e}`));
  await client.chat.completions.create({ model: "gpt-9", messages: [{ role: "user", content: "hi" }] })
      .then(() => { throw new Error("404 expected"); }, (e) => expect(e instanceof OpenAI.NotFoundError, `got ${e}`));
  await client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }], n: 9 })
      .then(() => { throw new Error("400 expected"); },
            (e) => expect(e instanceof OpenAI.BadRequestError && /'n'/.test(e.message), `got ${e}`));
  const poor = new OpenAI({ baseURL, apiKey: process.env.LOOM_POOR_KEY, maxRetries: 0 });
  await poor.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }] })
      .then(() => { throw new Error("402 expected"); },
            (e) => expect(e.status === 402 && e.code === "insufficient_quota", `got ${e.status} ${e.code}`));
});

await check("policies: a named policy as the model, and a limit no device meets is a 422 the SDK does not retry", async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  expect(["loom-fast", "loom-cheap", "loom-green", "loom-private"].every((p) => ids.includes(p)),
         `policies not listed: ${ids}`);
  const r = await client.chat.completions.create({
    model: "loom-cheap", messages: [{ role: "user", content: "What is the capital of Peru?" }] });
  expect(r.loom && r.loom.policy && r.loom.policy.name === "loom-cheap", `receipt ${JSON.stringify(r.loom)}`);
  expect(r.choices[0].message.content.length > 0, "empty");
  const before = sent;
  await client.chat.completions.create({
    model: "loom-auto", messages: [{ role: "user", content: "hi" }],
    loom: { policy: { regions: ["nowhere-1"] } } })
      .then(() => { throw new Error("422 expected"); },
            (e) => expect(e instanceof OpenAI.UnprocessableEntityError && e.code === "policy_unsatisfiable" &&
                          /region in \[nowhere-1\]/.test(e.message), `got ${e.status} ${e.code} ${e.message}`));
  expect(sent - before === 1, `the SDK sent ${sent - before} requests for a 422`);
});

await check("a request id sent again gets the first answer, charged once", async () => {
  const id = `sdk-${sdkName}-${Date.now()}`;
  const ask = { model, messages: [{ role: "user", content: "What is the capital of Peru?" }] };
  const first = await client.chat.completions.create(ask, { headers: { "X-Request-Id": id } });
  const before = sent;
  const { data: again, response } = await client.chat.completions
      .create(ask, { headers: { "Idempotency-Key": id } }).withResponse();
  expect(sent - before === 1, `the SDK sent ${sent - before} requests`);
  expect(response.headers.get("idempotent-replayed") === "true", "not marked as a replay");
  expect(again.choices[0].message.content === first.choices[0].message.content, "a different answer");
  expect(again.loom.cost_micro === first.loom.cost_micro, "a different charge");
});

await check("a timeout with retries is charged once, and the retry is told why", async () => {
  // 400 tokens at 100/s take 4 s; the SDK gives up after 1 s and retries with the same id.
  const timing = new OpenAI({ baseURL, apiKey: process.env.LOOM_KEY, maxRetries: 2, timeout: 1000,
                              fetch: countingFetch });
  const before = sent;
  await timing.chat.completions.create(
      { model: process.env.LOOM_SLOW_MODEL, messages: [{ role: "user", content: "Tell me a long story." }] },
      { headers: { "X-Request-Id": process.env.LOOM_TIMEOUT_ID } })
      .then(() => { throw new Error("a 4 s answer arrived within a 1 s timeout"); },
            (e) => expect(e instanceof OpenAI.ConflictError, `got ${e}`));
  // The first attempt timed out; its retry found the id spent (charged for the part produced)
  // and was told not to retry again.
  expect(sent - before === 2, `the SDK sent ${sent - before} requests`);
});

await check("aborting a stream part way leaves the server serving", async () => {
  const controller = new AbortController();
  const stream = await client.chat.completions.create(
      { model: process.env.LOOM_SLOW_MODEL || model, stream: true,
        messages: [{ role: "user", content: "Tell me a long story." }] },
      { signal: controller.signal, headers: { "X-Request-Id": process.env.LOOM_ABORT_ID || "" } });
  let chunks = 0;
  try {
    for await (const _ of stream) { if (++chunks === 2) controller.abort(); }
  } catch (e) {
    expect(e.name === "AbortError" || e instanceof OpenAI.APIUserAbortError, `got ${e}`);
  }
  const after = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Still there?" }] });
  expect(after.choices[0].message.content.length > 0, "no answer after the abort");
});


// Cosine similarity: the simulated embedding model puts texts that share words near each other.
const cosine = (a, b) => a.reduce((sum, x, i) => sum + x * b[i], 0) /
    (Math.hypot(...a) * Math.hypot(...b));

await check("embeddings.create (base64 by default, and float) on the mesh's embedding model", async () => {
  const embedModel = process.env.LOOM_EMBED_MODEL;
  const input = ["the cat sat on the mat", "the cat sat", "quarterly tax filing deadline"];
  const out = await client.embeddings.create({ model: embedModel, input });
  expect(out.data.length === 3, `${out.data.length} embeddings`);
  const [a, b, c] = out.data.map((d) => Array.from(d.embedding));
  expect(a.length === 256 && b.length === 256, `dimension ${a.length}`);
  expect(cosine(a, b) > cosine(a, c), `similar texts are not nearer: ${cosine(a, b)} vs ${cosine(a, c)}`);
  expect(out.usage.prompt_tokens > 0, "no usage");
  const floats = await client.embeddings.create({ model: embedModel, input: "the cat sat", encoding_format: "float", dimensions: 64 });
  expect(floats.data[0].embedding.length === 64, `dimensions ${floats.data[0].embedding.length}`);
  expect(Math.abs(cosine(floats.data[0].embedding, floats.data[0].embedding) - 1) < 1e-6, "not a vector");
  await client.embeddings.create({ model: "no-such-embedder", input: "x" })
      .then(() => { throw new Error("an unknown model answered"); },
            (e) => expect(e instanceof OpenAI.NotFoundError, `got ${e}`));
  await client.embeddings.create({ model, input: "x" })
      .then(() => { throw new Error("a chat model made embeddings"); },
            (e) => expect(e instanceof OpenAI.NotFoundError, `got ${e}`));
});

await check("an image part goes to a vision model as sent", async () => {
  const out = await client.chat.completions.create({ model: "loom-auto", messages: [{ role: "user", content: [
    { type: "text", text: "What is in this picture?" },
    { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=", detail: "low" } }] }] });
  expect(out.choices[0].message.content.includes("[1 image]"), `answer: ${out.choices[0].message.content}`);
});

await check("responses.create with a function tool, then the function_call_output turn", async () => {
  const tools = [{ type: "function", name: "get_weather", description: "Weather in a city",
                   parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } }];
  const input = [{ role: "user", content: "What is the weather in Lima? Use get_weather." }];
  const first = await client.responses.create({ model, tools, input });
  const call = first.output.find((o) => o.type === "function_call");
  expect(call && call.name === "get_weather", `output ${JSON.stringify(first.output)}`);
  JSON.parse(call.arguments);
  const second = await client.responses.create({ model, tools, input: [...input, call,
      { type: "function_call_output", call_id: call.call_id, output: "18 C, cloudy" }] });
  expect(second.output_text.includes("18 C, cloudy"), `text ${second.output_text}`);
  const stream = await client.responses.create({ model, tools, input, stream: true });
  let streamed = null;
  for await (const e of stream) {
    if (e.type === "response.output_item.done" && e.item.type === "function_call") streamed = e.item;
  }
  expect(streamed && streamed.name === "get_weather", "no streamed function_call item");
});

await check("n: 2 gives two choices, streamed and not", async () => {
  const two = await client.chat.completions.create({ model, n: 2, messages: [{ role: "user", content: "Name a colour." }] });
  expect(two.choices.length === 2 && two.choices[1].index === 1, `choices ${JSON.stringify(two.choices)}`);
  const stream = await client.chat.completions.create({ model, n: 2, stream: true,
                                                       messages: [{ role: "user", content: "Name a colour." }] });
  const texts = ["", ""];
  for await (const chunk of stream) {
    for (const c of chunk.choices) texts[c.index] += c.delta.content ?? "";
  }
  expect(texts[0].length > 0 && texts[1].length > 0, `texts ${JSON.stringify(texts)}`);
});

await check("logprobs and top_logprobs, streamed and not", async () => {
  const r = await client.chat.completions.create({ model, logprobs: true, top_logprobs: 2,
                                                  messages: [{ role: "user", content: "Name a colour." }] });
  const content = r.choices[0].logprobs?.content ?? [];
  expect(content.length > 0 && content.map((t) => t.token).join("") === r.choices[0].message.content,
         `logprobs ${JSON.stringify(r.choices[0].logprobs)}`);
  expect(content.every((t) => t.top_logprobs.length === 2), "top_logprobs");
  const stream = await client.chat.completions.create({ model, logprobs: true, stream: true,
                                                       messages: [{ role: "user", content: "Name a colour." }] });
  let tokens = 0;
  for await (const chunk of stream) tokens += chunk.choices[0]?.logprobs?.content?.length ?? 0;
  expect(tokens === content.length, `${tokens} streamed entries, ${content.length} unstreamed`);
});

finish();
