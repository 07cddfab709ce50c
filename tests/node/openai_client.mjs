// Calls the gateway's OpenAI-compatible API with the official `openai` npm package and prints
// what it saw as one JSON object (read by tests/integration/test_openai_http.py).
// GATEWAY_BASE_URL: the gateway's http://host:port/v1; GATEWAY_API_KEY: a key when keys are on.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.GATEWAY_BASE_URL,
  apiKey: process.env.GATEWAY_API_KEY || "unused",
  maxRetries: 0,
});
const messages = [{ role: "user", content: "node says the trend is up" }];
const out = {};

// Plain, escalated by a routing rule; the gateway's fields in the body and in headers.
const { data, response } = await client.chat.completions
  .create({ model: "", messages, max_tokens: 16, task: "detailed_analysis" })
  .withResponse();
out.plain = {
  text: data.choices[0].message.content,
  finish_reason: data.choices[0].finish_reason,
  usage: data.usage,
  gateway: data.gateway,
  headers: {
    tier: response.headers.get("x-gateway-tier"),
    provider: response.headers.get("x-gateway-provider"),
    escalation: response.headers.get("x-gateway-escalation"),
    attempts: response.headers.get("x-gateway-attempts"),
  },
};

// Streamed from the local tier, with usage; `gateway` rides on the last chunk.
const stream = await client.chat.completions.create({
  model: "",
  messages,
  max_tokens: 16,
  stream: true,
  stream_options: { include_usage: true },
});
const pieces = [];
let last = null;
let chunks = 0;
for await (const chunk of stream) {
  chunks += 1;
  for (const choice of chunk.choices) pieces.push(choice.delta.content ?? "");
  last = chunk;
}
out.stream = { text: pieces.join(""), chunks, usage: last.usage, gateway: last.gateway };

// Unsupported parameter: a 400 naming it.
try {
  await client.chat.completions.create({
    model: "",
    messages,
    functions: [{ name: "quote", parameters: { type: "object" } }],
  });
  out.unsupported = { status: 200 };
} catch (err) {
  out.unsupported = { status: err.status, param: err.param, type: err.type, message: err.message };
}

const models = [];
for await (const model of client.models.list()) models.push(model.id);
out.models = models;

process.stdout.write(JSON.stringify(out));
