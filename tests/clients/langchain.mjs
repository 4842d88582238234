// Drives a running Loom coordinator with LangChain's ChatOpenAI (@langchain/openai, pinned in
// package-lock.json), as a LangChain application would: invoke, stream, batch, a max-tokens
// cut, a loom-auto compiled request, a bad key, and an aborted stream. Started by
// tests/integration/client_sdk_test.cc with the mesh in the environment (see openai_sdk.mjs).
// Prints one line per check and "N passed, N failed"; exits 1 if any check failed.
import { ChatOpenAI, OpenAIEmbeddings } from "@langchain/openai";
import { HumanMessage, SystemMessage } from "@langchain/core/messages";
import { checks } from "./checks.mjs";

const { check, expect, finish } = checks("langchain");

const baseURL = process.env.LOOM_BASE_URL;
const model = process.env.LOOM_MODEL;
const chat = (options = {}) => new ChatOpenAI({
  model, apiKey: process.env.LOOM_KEY, configuration: { baseURL }, maxRetries: 0, ...options });

await check("invoke returns the answer with usage and finish reason", async () => {
  const m = await chat().invoke([new SystemMessage("Be brief."), new HumanMessage("What is the capital of Peru?")]);
  expect(typeof m.content === "string" && m.content.length > 0, `content ${JSON.stringify(m.content)}`);
  expect(m.response_metadata.finish_reason === "stop", `finish_reason ${m.response_metadata.finish_reason}`);
  expect(m.usage_metadata && m.usage_metadata.output_tokens > 0, `usage ${JSON.stringify(m.usage_metadata)}`);
});

await check("stream yields the answer in chunks", async () => {
  let text = "", chunks = 0;
  for await (const c of await chat({ streamUsage: true }).stream("Who wrote Hamlet?")) {
    text += c.content;
    chunks++;
  }
  expect(chunks > 1 && text.length > 0, `${chunks} chunks, text ${JSON.stringify(text)}`);
});

await check("batch runs several requests", async () => {
  const out = await chat().batch(["What is 2+2?", "Name a colour.", "Name a fruit."]);
  expect(out.length === 3 && out.every((m) => m.content.length > 0), "an empty answer in the batch");
});

await check("maxTokens cuts the answer and says length", async () => {
  const m = await chat({ maxTokens: 2 }).invoke("Tell me a long story.");
  expect(m.response_metadata.finish_reason === "length", `finish_reason ${m.response_metadata.finish_reason}`);
});

await check("bindTools calls the tool; withStructuredOutput returns the schema's shape", async () => {
  const tool = { type: "function", function: { name: "get_weather", description: "Weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } };
  const m = await chat().bindTools([tool]).invoke("What is the weather in Lima? Use get_weather.");
  expect(m.tool_calls && m.tool_calls[0] && m.tool_calls[0].name === "get_weather", `tool_calls ${JSON.stringify(m.tool_calls)}`);
  expect(typeof m.tool_calls[0].args.city === "string", `args ${JSON.stringify(m.tool_calls[0].args)}`);
  const schema = { type: "object", title: "city", description: "A city",
                   properties: { name: { type: "string" }, population: { type: "integer" } },
                   required: ["name", "population"] };
  for (const method of ["jsonSchema", "functionCalling"]) {
    const city = await chat().withStructuredOutput(schema, { method }).invoke("Name a city.");
    expect(typeof city.name === "string" && Number.isInteger(city.population), `${method}: ${JSON.stringify(city)}`);
  }
});

await check("loom-auto runs a compiled request", async () => {
  const m = await chat({ model: "loom-auto" }).invoke(
      "Write a haiku about the sea. Also write a Python function that reverses a string.");
  expect(m.content.length > 0, "empty answer");
});

await check("a bad key is a 401 error", async () => {
  const bad = new ChatOpenAI({ model, apiKey: "loom_wrong", configuration: { baseURL }, maxRetries: 0 });
  await bad.invoke("hi").then(() => { throw new Error("401 expected"); },
                              (e) => expect(e.status === 401 || /401/.test(String(e)), `got ${e}`));
});

await check("an aborted stream leaves the server serving", async () => {
  const controller = new AbortController();
  try {
    let n = 0;
    for await (const _ of await chat({ model: process.env.LOOM_SLOW_MODEL || model })
                   .stream("Tell me a long story.", { signal: controller.signal })) {
      if (++n === 2) controller.abort();
    }
  } catch (e) {
    expect(/abort/i.test(String(e && (e.name + e.message))), `got ${e}`);
  }
  const m = await chat().invoke("Still there?");
  expect(m.content.length > 0, "no answer after the abort");
});


// Cosine similarity: the simulated embedding model puts texts that share words near each other.
const cosine = (a, b) => a.reduce((sum, x, i) => sum + x * b[i], 0) /
    (Math.hypot(...a) * Math.hypot(...b));

await check("OpenAIEmbeddings embeds documents and a query", async () => {
  const embeddings = new OpenAIEmbeddings({ model: process.env.LOOM_EMBED_MODEL, apiKey: process.env.LOOM_KEY,
                                            configuration: { baseURL }, maxRetries: 0 });
  const docs = await embeddings.embedDocuments(["the cat sat on the mat", "quarterly tax filing deadline"]);
  expect(docs.length === 2 && docs[0].length === 256, `${docs.length} x ${docs[0]?.length}`);
  const query = await embeddings.embedQuery("where did the cat sit");
  expect(cosine(query, docs[0]) > cosine(query, docs[1]), "the query is not nearest its document");
});

finish();
