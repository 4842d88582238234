// Drives a running Loom coordinator with the Vercel AI SDK (`ai` and `@ai-sdk/openai`, pinned
// in package-lock.json) through both of its OpenAI paths: the default `openai(model)` (the
// Responses API) and `openai.chat(model)` (chat completions): generateText, streamText, a
// max-output cut, a loom-auto compiled request, a bad key, and an aborted stream. Started by
// tests/integration/client_sdk_test.cc; see openai_sdk.mjs.
// Prints one line per check and "N passed, N failed"; exits 1 if any check failed.
import { generateText, streamText, generateObject, tool, jsonSchema, APICallError, embed, embedMany } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { checks } from "./checks.mjs";

const { check, expect, finish } = checks("vercel-ai");

const model = process.env.LOOM_MODEL;
const openai = createOpenAI({ baseURL: process.env.LOOM_BASE_URL, apiKey: process.env.LOOM_KEY });

await check("generateText returns the answer with usage and finish reason", async () => {
  const r = await generateText({ model: openai.chat(model), system: "Be brief.",
                                 prompt: "What is the capital of Peru?", maxRetries: 0 });
  expect(r.text.length > 0, "empty text");
  expect(r.finishReason === "stop", `finishReason ${r.finishReason}`);
  expect(r.usage.outputTokens > 0, `usage ${JSON.stringify(r.usage)}`);
});

await check("streamText streams the answer and its usage", async () => {
  const r = streamText({ model: openai.chat(model), prompt: "Who wrote Hamlet?", maxRetries: 0 });
  let text = "", parts = 0;
  for await (const t of r.textStream) { text += t; parts++; }
  expect(parts > 1 && text.length > 0, `${parts} parts, text ${JSON.stringify(text)}`);
  expect((await r.finishReason) === "stop", `finishReason ${await r.finishReason}`);
  expect((await r.usage).outputTokens > 0, "no usage");
});

await check("maxOutputTokens cuts the answer and says length", async () => {
  const r = await generateText({ model: openai.chat(model), prompt: "Tell me a long story.",
                                 maxOutputTokens: 2, maxRetries: 0 });
  expect(r.finishReason === "length", `finishReason ${r.finishReason}`);
});

await check("the default openai(model) path (Responses API): generateText and streamText", async () => {
  const r = await generateText({ model: openai(model), system: "Be brief.",
                                 prompt: "What is the capital of Peru?", maxRetries: 0 });
  expect(r.text.length > 0, "empty text");
  expect(r.finishReason === "stop", `finishReason ${r.finishReason}`);
  expect(r.usage.outputTokens > 0, `usage ${JSON.stringify(r.usage)}`);
  const s = streamText({ model: openai(model), prompt: "Who wrote Hamlet?", maxRetries: 0 });
  let text = "", parts = 0;
  for await (const t of s.textStream) { text += t; parts++; }
  expect(parts > 1 && text.length > 0, `${parts} parts, text ${JSON.stringify(text)}`);
  expect((await s.finishReason) === "stop", `finishReason ${await s.finishReason}`);
  const cut = await generateText({ model: openai(model), prompt: "Tell me a long story.",
                                   maxOutputTokens: 2, maxRetries: 0 });
  expect(cut.finishReason === "length", `a cut answer's finishReason ${cut.finishReason}`);
});

await check("tools run through the SDK's loop; generateObject returns the schema's shape", async () => {
  let called = null;
  const r = await generateText({ model: openai.chat(model), maxRetries: 0,
      prompt: "What is the weather in Lima? Use get_weather.",
      tools: { get_weather: tool({ description: "Weather in a city",
        inputSchema: jsonSchema({ type: "object", properties: { city: { type: "string" } }, required: ["city"] }),
        execute: async ({ city }) => { called = city; return "18 C, cloudy"; } }) },
      stopWhen: ({ steps }) => steps.length >= 2 });
  expect(typeof called === "string", "the tool was not called");
  expect(r.steps.length === 2 && r.text.includes("18 C, cloudy"), `steps ${r.steps.length}, text ${r.text}`);
  const o = await generateObject({ model: openai.chat(model), maxRetries: 0, prompt: "Name a city.",
      schema: jsonSchema({ type: "object", properties: { name: { type: "string" }, population: { type: "integer" } },
                           required: ["name", "population"], additionalProperties: false }) });
  expect(typeof o.object.name === "string" && Number.isInteger(o.object.population), JSON.stringify(o.object));
});

await check("loom-auto runs a compiled request", async () => {
  const r = await generateText({ model: openai.chat("loom-auto"), maxRetries: 0,
      prompt: "Write a haiku about the sea. Also write a Python function that reverses a string." });
  expect(r.text.length > 0, "empty text");
});

await check("a bad key is an APICallError with status 401", async () => {
  const bad = createOpenAI({ baseURL: process.env.LOOM_BASE_URL, apiKey: "loom_wrong" });
  await generateText({ model: bad.chat(model), prompt: "hi", maxRetries: 0 }).then(
      () => { throw new Error("401 expected"); },
      (e) => expect(APICallError.isInstance(e) && e.statusCode === 401 && e.isRetryable === false,
                    `got ${e} (status ${e.statusCode}, retryable ${e.isRetryable})`));
});

await check("an aborted stream leaves the server serving", async () => {
  const controller = new AbortController();
  const r = streamText({ model: openai.chat(process.env.LOOM_SLOW_MODEL || model),
                         prompt: "Tell me a long story.", abortSignal: controller.signal,
                         headers: { "X-Request-Id": process.env.LOOM_ABORT_ID || "" },
                         maxRetries: 0, onError: () => {} });
  let n = 0;
  try {
    for await (const _ of r.textStream) { if (++n === 2) controller.abort(); }
  } catch (e) {
    expect(/abort/i.test(String(e && (e.name + e.message))), `got ${e}`);
  }
  const after = await generateText({ model: openai.chat(model), prompt: "Still there?", maxRetries: 0 });
  expect(after.text.length > 0, "no answer after the abort");
});


// Cosine similarity: the simulated embedding model puts texts that share words near each other.
const cosine = (a, b) => a.reduce((sum, x, i) => sum + x * b[i], 0) /
    (Math.hypot(...a) * Math.hypot(...b));

await check("embed and embedMany with openai.textEmbeddingModel", async () => {
  const embedder = openai.textEmbeddingModel(process.env.LOOM_EMBED_MODEL);
  const { embeddings, usage } = await embedMany({ model: embedder, values: ["the cat sat on the mat", "quarterly tax filing deadline"] });
  expect(embeddings.length === 2 && embeddings[0].length === 256, `${embeddings.length} x ${embeddings[0]?.length}`);
  expect(usage.tokens > 0, `usage ${JSON.stringify(usage)}`);
  const { embedding } = await embed({ model: embedder, value: "where did the cat sit" });
  expect(cosine(embedding, embeddings[0]) > cosine(embedding, embeddings[1]), "the query is not nearest its document");
});

await check("tools through the default openai(model) path (Responses API), streamed and not", async () => {
  for (const streamed of [false, true]) {
    let called = null;
    const options = { model: openai(model), maxRetries: 0,
        prompt: "What is the weather in Lima? Use get_weather.",
        tools: { get_weather: tool({ description: "Weather in a city",
          inputSchema: jsonSchema({ type: "object", properties: { city: { type: "string" } }, required: ["city"] }),
          execute: async ({ city }) => { called = city; return "18 C, cloudy"; } }) },
        stopWhen: ({ steps }) => steps.length >= 2 };
    let text, steps;
    if (streamed) {
      const s = streamText(options);
      text = "";
      for await (const t of s.textStream) text += t;
      steps = (await s.steps).length;
    } else {
      const r = await generateText(options);
      text = r.text;
      steps = r.steps.length;
    }
    expect(typeof called === "string", `streamed=${streamed}: the tool was not called`);
    expect(steps === 2 && text.includes("18 C, cloudy"), `streamed=${streamed}: steps ${steps}, text ${text}`);
  }
});

finish();
