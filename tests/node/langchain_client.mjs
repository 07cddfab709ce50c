// Calls the gateway's OpenAI-compatible API with LangChain JS (`@langchain/openai`) and prints what it saw as
// one JSON object (read by tests/integration/test_js_clients.py): invoke, stream, batch and structured output
// over chat completions, and invoke and structured output over the Responses API (useResponsesApi).
// GATEWAY_BASE_URL: the gateway's http://host:port/v1.
import { ChatOpenAI } from "@langchain/openai";
import { z } from "zod";

const options = {
  model: "gpt-4o-mini",
  apiKey: "unused",
  maxRetries: 0,
  configuration: { baseURL: process.env.GATEWAY_BASE_URL },
};
const chat = new ChatOpenAI(options);
const Trade = z.object({
  signal: z.enum(["buy", "sell", "hold"]),
  size: z.number().min(0).max(1),
  reason: z.string(),
});
const out = {};

const answer = await chat.invoke([
  ["system", "Answer briefly."],
  ["user", "langchain says the trend is up"],
]);
out.invoke = { text: answer.content, usage: answer.usage_metadata };

const pieces = [];
for await (const chunk of await chat.stream("langchain streams the trend")) pieces.push(chunk.content);
out.stream = { text: pieces.join(""), chunks: pieces.length };

const batch = await chat.batch(["first question", "second question"]);
out.batch = batch.map((message) => message.content);

const structured = chat.withStructuredOutput(Trade, { name: "trade", method: "jsonSchema" });
out.structured = await structured.invoke("BTC fell 3% today: signal?");

const responses = new ChatOpenAI({ ...options, useResponsesApi: true });
const viaResponses = await responses.invoke("langchain asks the responses api");
out.responses = { text: viaResponses.text };
const responsesStream = [];
for await (const chunk of await responses.stream("langchain streams the responses api")) responsesStream.push(chunk.text);
out.responses.stream = responsesStream.join("");
out.responses.structured = await responses
  .withStructuredOutput(Trade, { name: "trade", method: "jsonSchema" })
  .invoke("ETH fell 5% today: signal?");

process.stdout.write(JSON.stringify(out));
